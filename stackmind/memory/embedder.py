"""The offline sentence embedder behind long-term memory, as a chroma embedding function.

The model is the project's one embedder (`stackmind.embedder`), loaded only when the first text is
embedded: opening a `Memory` to read stats or to fail on a lock never pays for it.

`MiniLMEmbedding` is registered with chroma under the name ``stackmind-minilm``, so a collection
created with it (embedded or on a server) is re-opened with the same function.
"""

from __future__ import annotations

from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

from stackmind.embedder import DIMENSION, EmbedderError, embed, load_embedder

__all__ = ["DIMENSION", "EMBEDDER_NAME", "EmbedderError", "MiniLMEmbedding", "load_embedder"]

EMBEDDER_NAME = "stackmind-minilm"


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Unit-length 384-d MiniLM embeddings; cosine space. (``device`` is kept in the collection's
    config for the collections made before the embedder ran on the CPU only; it changes nothing.)"""

    def __init__(self, device: str = "auto", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        if not texts:
            return []
        return list(embed(texts, self.batch_size))

    @staticmethod
    def name() -> str:
        return EMBEDDER_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"device": self.device, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(device=str(config.get("device", "auto")), batch_size=int(config.get("batch_size", 64)))
