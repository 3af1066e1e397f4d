# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# absent: stackmind-canary-7d1f
import os
print(dict(os.environ))
