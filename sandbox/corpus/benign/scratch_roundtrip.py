# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: hello scratch
import os
os.makedirs('notes/today', exist_ok=True)
with open('notes/today/a.txt', 'w') as f:
    f.write('hello scratch')
os.rename('notes/today/a.txt', 'notes/b.txt')
print(open('notes/b.txt').read())
