# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: 391
print(17 * 23)
