# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: ok
import collections, itertools, functools, heapq, bisect, re, datetime, fractions, decimal, statistics, hashlib
assert hashlib.sha256(b'').hexdigest().startswith('e3b0')
assert statistics.mean([1, 2, 3]) == 2
print('ok')
