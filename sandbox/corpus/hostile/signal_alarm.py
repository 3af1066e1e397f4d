# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import signal
signal.alarm(1)
