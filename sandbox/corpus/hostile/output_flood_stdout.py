# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: output_limit
while True:
    print('A' * 65536)
