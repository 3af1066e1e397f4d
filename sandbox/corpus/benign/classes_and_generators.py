# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: [0, 1, 4, 9, 16]
class Sq:
    def __iter__(self):
        yield from (i * i for i in range(5))
print(list(Sq()))
