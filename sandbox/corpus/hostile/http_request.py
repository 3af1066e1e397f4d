# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import urllib.request
print(urllib.request.urlopen('http://example.com').read())
