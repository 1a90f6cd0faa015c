"""Errors of the local Kafka broker (the JVM that `tether kafka up` runs).

TetherError
└── BrokerError               the local broker cannot be set up, started or stopped
    ├── BrokerSetupError      Java or Maven is missing, or the Kafka jars cannot be resolved
    ├── BrokerStartError      the broker did not come up (carries the broker log's tail)
    └── BrokerStopError       the broker did not exit, even after SIGKILL
"""

from __future__ import annotations

from pathlib import Path

from eventstore.errors import TetherError


class BrokerError(TetherError):
    """The local Kafka broker cannot be set up, started or stopped."""


class BrokerSetupError(BrokerError):
    """Java or Maven is missing or too old, or Maven could not resolve the Kafka jars."""

    def __init__(self, message: str, *, output_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output_tail = output_tail
        """The last lines of the failing tool's output, when there is one."""

    def __str__(self) -> str:
        if not self.output_tail:
            return self.message
        return f"{self.message}\n--- last lines of output ---\n{self.output_tail}"


class BrokerStartError(BrokerError):
    """The broker process failed, or did not become ready in time."""

    def __init__(self, message: str, *, data_dir: Path, log_path: Path | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.data_dir = data_dir
        """The broker's data directory."""
        self.log_path = log_path
        """The file holding the broker's output, when it got that far."""
        self.log_tail = log_tail
        """The last lines of that file."""

    def __str__(self) -> str:
        text = f"{self.message} (data dir {self.data_dir})"
        if self.log_tail:
            source = f"last lines of {self.log_path}" if self.log_path else "output"
            text += f"\n--- {source} ---\n{self.log_tail}"
        return text


class BrokerStopError(BrokerError):
    """The broker process did not exit, even after SIGKILL."""
