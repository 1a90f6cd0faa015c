"""Errors of the test kit and the replayer.

TetherError
├── SessionTestKitError       the kit cannot do what the test asked (a call that waits for nothing)
│   └── RoundTripError        a state, event or step result does not come back the same
├── DecodeError
│   └── HistoryFormatError    a document that is not a session history this code reads
└── ActorError
    └── TerminalError
        └── UnrecordedStepError  a replayed handler asks for a step its journal does not hold

`ReplayDiverged` is control flow (a BaseException): it ends a replayed invocation at the first
step the recorded journal does not hold, so that step never runs.
"""

from __future__ import annotations

from eventstore.errors import DecodeError, TetherError

from ..errors import TerminalError


class SessionTestKitError(TetherError):
    """The kit cannot do what the test asked (a call that waits for something nothing will bring)."""


class RoundTripError(SessionTestKitError):
    """A state, event or step result does not come back the same through the codec or a restore."""


class HistoryFormatError(DecodeError):
    """A document that is not a session history this code can read (the message says why)."""


class UnrecordedStepError(TerminalError):
    """A replayed handler asks for a step the recorded journal does not hold (it is not run)."""


class ReplayDiverged(BaseException):  # noqa: N818 - control flow of a replay
    """Ends a replayed invocation at step `index`, `name`, which the recorded journal does not hold."""

    def __init__(self, index: int, name: str) -> None:
        super().__init__(name)
        self.index = index
        self.name = name
