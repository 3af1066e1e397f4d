# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import socket
s = socket.socket()
s.bind(('0.0.0.0', 8765))
s.listen()
print('listening')
