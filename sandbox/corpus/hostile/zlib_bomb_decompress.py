# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: memory
# files: bomb.zlib=zlib-bomb
import zlib
data = zlib.decompress(open('bomb.zlib', 'rb').read())
print(len(data))
