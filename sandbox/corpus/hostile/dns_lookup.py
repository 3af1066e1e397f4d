# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import socket
print(socket.getaddrinfo('example.com', 80))
