# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error|timeout
import os
path = 'd'
while True:
    os.makedirs(path)
    path += '/d'
