# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# absent: stackmind-canary-7d1f
import os
for k in ('STACKMIND_HOSTILE_CANARY', 'PATH', 'HOME', 'USER', 'AWS_SECRET_ACCESS_KEY'):
    print(k, os.environ.get(k))
