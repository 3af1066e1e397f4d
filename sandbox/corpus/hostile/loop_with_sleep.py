# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: timeout
import time
while True:
    time.sleep(1)
