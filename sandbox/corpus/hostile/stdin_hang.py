# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
import sys
print(repr(sys.stdin.read()))
