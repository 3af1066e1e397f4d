# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import threading
ts = [threading.Thread(target=lambda: None) for _ in range(4)]
for t in ts:
    t.start()
print('started')
