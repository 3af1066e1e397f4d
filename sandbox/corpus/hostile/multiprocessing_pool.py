# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import multiprocessing
with multiprocessing.Pool(2) as p:
    print(p.map(abs, [-1, -2]))
