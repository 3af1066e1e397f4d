"""Long-term memory: frames that leave a stack, in chromadb, recalled per owner.

See `stackmind.memory.store` for the `Memory` API, `stackmind.memory.forgetting` for the decay
policy and ranking, and `stackmind.memory.embedder` for the offline MiniLM embedding function.
"""

from stackmind.memory.embedder import EmbedderError, MiniLMEmbedding, load_embedder
from stackmind.memory.forgetting import DecayPolicy, RecallRanking
from stackmind.memory.store import (
    ForgetCandidate,
    ForgetReport,
    Memory,
    MemoryConfig,
    MemoryLockedError,
    MemoryServerError,
    MemoryStats,
    MemoryStoreError,
    MemoryUnreadableError,
    OwnerError,
    Recalled,
    check_owner,
    memory_id,
    read_trace,
)

__all__ = [
    "DecayPolicy", "EmbedderError", "ForgetCandidate", "ForgetReport", "Memory", "MemoryConfig",
    "MemoryLockedError", "MemoryServerError", "MemoryStats", "MemoryStoreError", "MemoryUnreadableError", "MiniLMEmbedding",
    "OwnerError", "RecallRanking", "Recalled", "check_owner", "load_embedder", "memory_id", "read_trace",
]
