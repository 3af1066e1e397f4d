# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
handles = [open(f'h{i}', 'w') for i in range(100000)]
