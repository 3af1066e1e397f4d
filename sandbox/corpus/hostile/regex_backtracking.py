# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: timeout
import re
re.match(r'(a+)+$', 'a' * 64 + 'b')
