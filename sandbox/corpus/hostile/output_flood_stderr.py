# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: output_limit
import sys
while True:
    sys.stderr.write('E' * 65536)
