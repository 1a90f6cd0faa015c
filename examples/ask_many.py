"""Calls the quickstart agent N times (default 100) over 10 sessions, for a worker to be watched.

Run a worker first: ``tether serve examples.quickstart:agent --metrics-port 9464``; this client
reads the same ``TETHER_*`` settings (the embedded log in ``./.tether`` by default).
"""

import asyncio
import sys

from quickstart import Ask, ask

from actors import Client, Settings


async def main(count: int) -> None:
    async with Client.connect(Settings()) as client:
        for n in range(count):
            await client.call(ask, f"session-{n % 10}", Ask(question=f"question {n}"))
    print(f"{count} calls answered")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
