"""A web console for operators: sessions, their timelines, dead letters and sagas in a browser.

``tether console`` serves it (`console.cli`); `create_app` returns the same ASGI app to mount
elsewhere. It reads and acts only through the APIs the CLI uses (`actors.inspection`, `dlq`,
`sagas.inspect`, `SagaClient`); actions need the token of `ConsoleConfig`.
"""

from .app import create_app
from .config import ConsoleConfig
from .errors import ActionRefusedError

__all__ = ["ActionRefusedError", "ConsoleConfig", "create_app"]
