"""Messages that many test workloads share, so each workload declares only what is its own."""

from __future__ import annotations

from pydantic import BaseModel


class Empty(BaseModel):
    """No fields: the state of a session that keeps none, or a request without arguments."""


class Note(BaseModel):
    """A line of text: a request, a reply or an event that carries only words."""

    text: str = ""


class Add(BaseModel):
    """A number for a counter to add."""

    n: int = 1


class Added(BaseModel):
    """The event a counter folds: `n` was added."""

    n: int
