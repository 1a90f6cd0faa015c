"""Dead letters: inspect, replay and discard what failed for good; statuses kept on Kafka."""

from eventstore.errors import TetherError

from .deadletters import DeadLetters
from .errors import (
    DlqError,
    InvalidFilterError,
    NoDeadLetterTopicError,
    NoMatchError,
    ReplayTakenOverError,
    TransformLoadError,
    UnknownDeadLetterError,
)
from .inspector import DEFAULT_GROUP_BY, GROUP_FIELDS, Filter, StatsRow, group_stats, parse_time
from .records import DeadLetter
from .replayer import ReplayTarget, Transform
from .reports import ItemResult, Report
from .status import STATUSES, Resolution, Status, Transition

__all__ = [
    "DEFAULT_GROUP_BY",
    "DeadLetter",
    "DeadLetters",
    "DlqError",
    "Filter",
    "GROUP_FIELDS",
    "InvalidFilterError",
    "ItemResult",
    "NoDeadLetterTopicError",
    "NoMatchError",
    "ReplayTakenOverError",
    "ReplayTarget",
    "Report",
    "Resolution",
    "STATUSES",
    "StatsRow",
    "Status",
    "TetherError",
    "Transform",
    "TransformLoadError",
    "Transition",
    "UnknownDeadLetterError",
    "group_stats",
    "parse_time",
]
