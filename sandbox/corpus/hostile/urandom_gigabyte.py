# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory
import os

os.urandom(10 ** 9)
