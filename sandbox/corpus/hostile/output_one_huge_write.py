# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: output_limit
import sys
sys.stdout.write('B' * (8 << 20))
