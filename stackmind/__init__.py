"""stackmind: a text-native, self-modifying agent over a language model."""

from stackmind.settings import Settings
from stackmind.stack import Frame, Stack, StackError, StackStore
from stackmind.storage import EpisodeStore, SQLiteStackStore, open_episodes, open_store
from stackmind.trace import Episode, Step, TraceError

__version__ = "0.1.0"

__all__ = [
    "Episode", "EpisodeStore", "Frame", "SQLiteStackStore", "Settings", "Stack", "StackError", "StackStore",
    "Step", "TraceError", "__version__", "open_episodes", "open_store",
]
