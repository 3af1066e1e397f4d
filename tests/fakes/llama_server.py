"""Start llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``), with the CPU's
extra buffer types off (AMX, repacked weights), as `stackmind.llm.llamacpp` runs llama.cpp: on some
virtual machines the CPU reports AMX but the kernel does not enable it, and the server's first matrix
product dies with SIGILL. Arguments are the server's own.

    python tests/fakes/llama_server.py --model FILE.gguf --port 8000
"""

from __future__ import annotations

import runpy

import llama_cpp.llama_cpp as lib

_default = lib.llama_model_default_params


def _params():  # noqa: ANN202
    params = _default()
    if hasattr(params, "use_extra_bufts"):
        params.use_extra_bufts = False
    return params


lib.llama_model_default_params = _params

if __name__ == "__main__":
    runpy.run_module("llama_cpp.server", run_name="__main__")
