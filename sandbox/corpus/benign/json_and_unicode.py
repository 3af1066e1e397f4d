# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: {"π": 3.14159}
import json
print(json.dumps({'π': 3.14159}, ensure_ascii=False))
