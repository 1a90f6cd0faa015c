"""The embedded backend: the log contract on one local SQLite file, no broker needed."""

from .log import EmbeddedLog

__all__ = ["EmbeddedLog"]
