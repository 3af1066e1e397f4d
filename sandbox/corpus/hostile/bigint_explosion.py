# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: timeout|memory
x = 10 ** (10 ** 9)
print(len(str(x)))
