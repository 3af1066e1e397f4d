# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error|ok
# absent: etc
import os
for _ in range(10):
    try:
        os.chdir('..')
    except OSError:
        pass
print(sorted(os.listdir('.')))
