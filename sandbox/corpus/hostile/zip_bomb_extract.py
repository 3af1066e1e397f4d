# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error|memory
# files: bomb.zip=zip-bomb
import zipfile
zipfile.ZipFile('bomb.zip').extractall('out')
print('extracted')
