"""Errors of the dead-letter tools: operator mistakes, each with what to do about it.

    TetherError (eventstore.errors)
    └── DlqError                        root of the dead-letter tools' errors
        ├── UnknownDeadLetterError      no dead letter has that id
        ├── NoMatchError                a filter matched no dead letter
        ├── InvalidFilterError          a filter or option value that cannot be understood
        ├── TransformLoadError          ``--transform MODULE:FUNC`` cannot be imported or called
        ├── NoDeadLetterTopicError      the namespace has no dead-letter topic (wrong namespace?)
        └── ReplayTakenOverError        a newer replay of the namespace fenced this one

Every `DlqError` is an operator mistake: the CLI exits with code 2 for them. A transform that
raises on one dead letter is not an error of the run: that item is reported as failed and the
replay goes on. An unreachable broker is `LogUnavailableError` (retriable, exit code 3).
"""

from __future__ import annotations

from eventstore.errors import TetherError

__all__ = [
    "DlqError",
    "InvalidFilterError",
    "NoDeadLetterTopicError",
    "NoMatchError",
    "ReplayTakenOverError",
    "TransformLoadError",
    "UnknownDeadLetterError",
]


class DlqError(TetherError):
    """Root of the dead-letter tools' errors; each is an operator mistake."""


class UnknownDeadLetterError(DlqError):
    """No dead letter has that id (ids are ``{partition}-{offset}`` of the dead-letter topic)."""

    def __init__(self, dead_letter_id: str, *, namespace: str) -> None:
        super().__init__(
            f"no dead letter {dead_letter_id!r} in namespace {namespace!r}; ids look like "
            "'0-17' (partition-offset of the dead-letter topic): see `tether dlq list`"
        )
        self.dead_letter_id = dead_letter_id
        self.namespace = namespace


class NoMatchError(DlqError):
    """A filter matched no dead letter, so there is nothing to show or act on."""

    def __init__(self, description: str, *, total: int, namespace: str) -> None:
        super().__init__(
            f"no dead letter matches {description} in namespace {namespace!r} ({total} dead "
            "letter(s) in total); loosen the filter or check --namespace"
        )
        self.description = description
        self.total = total
        self.namespace = namespace


class InvalidFilterError(DlqError):
    """A filter or option value that cannot be understood (a bad time, an empty selection)."""


class TransformLoadError(DlqError):
    """``--transform MODULE:FUNC`` names nothing importable and callable."""


class NoDeadLetterTopicError(DlqError):
    """The namespace has no dead-letter topic: no worker or client ever used it."""

    def __init__(self, topic: str, *, namespace: str) -> None:
        super().__init__(
            f"namespace {namespace!r} has no dead-letter topic {topic!r}: no worker or client "
            "has used it yet. Check --namespace / TETHER_NAMESPACE (and --bootstrap-servers or "
            "--data-dir for where the log is)"
        )
        self.topic = topic
        self.namespace = namespace


class ReplayTakenOverError(DlqError):
    """A newer replay of the same namespace started and fenced this one.

    Replays of one namespace share one transactional id, so the newest one runs and older ones
    stop at their next chunk. Everything the fenced replay committed is recorded as replayed,
    and nothing it had not committed was sent: running it again resumes.
    """

    def __init__(self, *, namespace: str) -> None:
        super().__init__(
            f"another replay of namespace {namespace!r} started and took over (replays of one "
            "namespace run one at a time); every dead letter this one sent is recorded as "
            "replayed. Run this replay again once the other one ends to replay the rest"
        )
        self.namespace = namespace
