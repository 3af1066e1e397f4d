# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import os
os._exit(7)
