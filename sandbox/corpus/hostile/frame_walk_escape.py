# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# absent: wasmtime
import sys, gc
# Look for anything from the host among the guest's objects.
names = {type(o).__module__ for o in gc.get_objects()}
print(sorted(n for n in names if n)[:50])
print(sys.modules.keys())
