# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: caught ZeroDivisionError
try:
    1 / 0
except ZeroDivisionError as e:
    print('caught', type(e).__name__)
