# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
# absent: root:x:0
import os
os.symlink('/etc/passwd', 'passwd_link')
print(open('passwd_link').read())
