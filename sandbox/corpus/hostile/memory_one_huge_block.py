# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory
block = bytearray(1 << 30)  # 1 GiB: over any sane cap, under wasm32's index limit
