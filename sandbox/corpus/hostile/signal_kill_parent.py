# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
