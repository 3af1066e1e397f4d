# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: timeout|memory|error
import sys
sys.setrecursionlimit(10 ** 9)

def f(n):
    return f(n + 1) + 1

f(0)
