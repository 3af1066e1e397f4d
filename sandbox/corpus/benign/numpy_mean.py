# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: ok
# stdout: 2.5
import numpy as np
print(np.arange(6).mean())
