# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory
s = 'x'
while True:
    s = s + s
