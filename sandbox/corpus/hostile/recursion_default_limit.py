# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
def f(n):
    return f(n + 1)

f(0)
