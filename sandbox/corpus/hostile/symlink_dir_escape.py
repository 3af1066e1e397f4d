# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import os
os.symlink('/', 'root_link')
print(os.listdir('root_link/etc'))
