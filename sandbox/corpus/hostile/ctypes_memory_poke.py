# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import ctypes
ctypes.memmove(0, b'x' * 64, 64)
ctypes.string_at(0xdeadbeef, 16)
print('poked')
