# ruff: noqa  (a corpus program: deliberately odd code, run only inside the sandbox)
# expect: error
# Code inside the guest may eval freely: it is still inside the VM.
eval("__import__('os').system('id')")
