# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(('1.1.1.1', 80))
print('connected')
