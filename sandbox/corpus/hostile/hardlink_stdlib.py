# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import os
os.link('/usr/local/lib/python315.zip', 'copy.zip')
