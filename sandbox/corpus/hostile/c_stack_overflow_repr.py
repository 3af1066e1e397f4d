# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error|memory
# A C-level recursion (repr of a deeply nested list) overflows the wasm stack: a trap, not a crash.
nested = []
for _ in range(10 ** 6):
    nested = [nested]
print(repr(nested)[:10])
