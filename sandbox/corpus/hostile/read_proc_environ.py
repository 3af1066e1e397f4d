# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
# absent: PATH=
print(open('/proc/self/environ', 'rb').read())
