"""`tether blobs`: the namespace's blob store (large values by reference)."""

from __future__ import annotations

import asyncio

import click

from eventstore import Topics, open_log
from eventstore.blob_sweep import SweepReport, sweep_blobs
from eventstore.blobs import open_blob_store
from eventstore.errors import UsageError

from ..settings import Settings
from .main import HELP_OPTIONS, say, settings_options


@click.group(context_settings=HELP_OPTIONS)
def blobs() -> None:
    """The blob store of large values (TETHER_RUNTIME__BLOB_STORE or BLOB_DIR)."""


@blobs.command("gc")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=86_400.0,
    show_default=True,
    metavar="SECONDS",
    help="Sweep only blobs last written longer ago than this (covers records not yet committed).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document).")
@settings_options
def blobs_gc(settings: Settings, older_than: float, dry_run: bool, as_json: bool) -> None:
    """Delete blobs that no record of the namespace names any more.

    Scans every topic of the namespace for blob references; a blob none names and last written
    more than --older-than seconds ago is deleted. Run it with the namespace's workers up or
    down; never point two namespaces' settings at one store and sweep only one of them.
    """
    location = settings.runtime.blob_location
    if location is None:
        raise UsageError("no blob store is configured: set TETHER_RUNTIME__BLOB_STORE (or TETHER_RUNTIME__BLOB_DIR)")
    store = open_blob_store(location)

    async def go() -> SweepReport:
        log = open_log(settings)
        await log.start()
        try:
            return await sweep_blobs(log, Topics(settings.namespace), store, older_than=older_than, dry_run=dry_run)
        finally:
            await log.close()

    report = asyncio.run(go())
    verb = "would delete" if dry_run else "deleted"
    say(
        as_json,
        f"{report.stored} blobs in {location}: {report.live} named by records, {report.young} younger than "
        f"{older_than:g} s (kept); {verb} {len(report.swept)} ({report.swept_bytes} bytes)",
        **report.to_json(),
    )
