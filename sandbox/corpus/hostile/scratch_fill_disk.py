# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
chunk = b'\0' * (1 << 20)
i = 0
while True:
    with open(f'fill{i}.bin', 'wb') as f:
        f.write(chunk * 8)
    i += 1
