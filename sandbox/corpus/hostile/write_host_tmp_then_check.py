# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# Writes land in the guest's own scratch /tmp, never the host's (the test checks the host).
import os
os.makedirs('/tmp', exist_ok=True)
open('/tmp/stackmind_pwned', 'w').write('pwned')
open('/etc_stackmind_pwned', 'w').write('pwned')
print(sorted(os.listdir('/')))
