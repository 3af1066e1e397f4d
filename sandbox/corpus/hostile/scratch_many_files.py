# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error|timeout
i = 0
while True:
    open(f'f{i}', 'w').close()
    i += 1
