# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
open('/usr/local/lib/python315.zip', 'wb').write(b'pwned')
