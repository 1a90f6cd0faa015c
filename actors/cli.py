"""The `tether` command: a click group gathering the `tether.commands` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

import click


def build() -> click.Group:
    """Return the `tether` group with every command that installed packages contribute."""
    group = click.Group("tether", help="Durable AI-agent sessions on Apache Kafka.")
    for entry in entry_points(group="tether.commands"):
        try:
            command = entry.load()
        except (ImportError, AttributeError):  # a package that is not written or installed yet
            continue
        if isinstance(command, click.Command):
            group.add_command(command, entry.name)
    return group


def main() -> None:
    """Run the `tether` command line."""
    build()()
