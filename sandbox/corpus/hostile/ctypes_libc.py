# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import ctypes
libc = ctypes.CDLL(None)
libc.system(b'touch /tmp/stackmind_pwned')
