# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
# absent: root:x:0
print(open('/usr/local/lib/../../../etc/passwd').read())
