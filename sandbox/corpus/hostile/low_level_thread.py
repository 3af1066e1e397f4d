# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
import _thread

_thread.start_new_thread(print, ("from a thread",))
