# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory
hog = []
while True:
    hog.append(bytearray(16 << 20))
