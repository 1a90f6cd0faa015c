"""The `EventLog` contract as tests (`LogContract`): run them against any backend, Tether's two or a third.

Subclass `LogContract` in a test module and give it a ``log_factory`` fixture: a callable that
returns a new, unstarted log on the same storage each time (two instances stand for two
processes). Every test gets a fresh namespace (the ``namespace`` fixture, override it to
choose). Needs pytest and pytest-asyncio (Tether's ``test`` extra)::

    from eventstore.conformance import LogContract

    class TestMyLog(LogContract):
        @pytest.fixture
        def log_factory(self, tmp_path):
            return lambda: MyLog(tmp_path / "data")

Reads right after a commit go through the log that committed (read-your-writes) or through a
writer opened for the same transactional id; any other reader sees a commit only eventually,
so those reads poll (`fetch_until`, up to `WAIT` seconds).
"""

from .errors import AbortError
from .log_contract import WAIT, LogContract, RecordingListener, fetch_until, read_all, values

__all__ = ["AbortError", "LogContract", "RecordingListener", "WAIT", "fetch_until", "read_all", "values"]
