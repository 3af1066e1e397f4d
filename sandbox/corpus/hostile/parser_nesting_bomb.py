# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory|error
eval("(" * 200000 + ")" * 200000)
