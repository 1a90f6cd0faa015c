"""Testing sessions and sagas: a test kit on the real runtime in virtual time, and a replayer.

- `SessionTestKit`: ``async with SessionTestKit(agent) as kit: result = await kit.call(...)``;
  steps stubbed or failed by name, `kit.advance(hours=24)`, `kit.restart()`.
- `Replayer`: the current code against recorded histories (`tether sessions export`).
- The pytest plugin (`actors.testing.pytest_plugin`, registered by entry point) gives the
  fixtures ``session_kit`` and ``replayer``.
"""

from .clock import VirtualClock
from .errors import HistoryFormatError, RoundTripError, SessionTestKitError, UnrecordedStepError
from .history import HistoryRecord, SessionHistory, export_history, read_history
from .kit import (
    CallResult,
    DeadLetter,
    PendingCall,
    SessionTestKit,
    StepRun,
    Wait,
)
from .replayer import Mismatch, Replayer, ReplayReport
from .stubs import StepStub, StepStubs

__all__ = [
    "CallResult",
    "DeadLetter",
    "HistoryFormatError",
    "HistoryRecord",
    "Mismatch",
    "PendingCall",
    "ReplayReport",
    "Replayer",
    "RoundTripError",
    "SessionHistory",
    "SessionTestKit",
    "SessionTestKitError",
    "StepRun",
    "StepStub",
    "StepStubs",
    "UnrecordedStepError",
    "VirtualClock",
    "Wait",
    "export_history",
    "read_history",
]
