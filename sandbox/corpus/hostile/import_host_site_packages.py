# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import sys
sys.path[:0] = ['/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages', '/usr/lib/python3/dist-packages']
import wasmtime
print(wasmtime)
