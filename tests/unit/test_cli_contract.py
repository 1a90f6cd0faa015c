"""One contract for every `tether` command, checked over the command tree itself.

Every command answers ``--help`` and ``-h``; a wrong option is exit 2 with click's one-line
message; every command that reads settings turns a bad ``TETHER_*`` value or ``--partitions 0``
into exit 2 naming the problem, never a traceback. `tether --help` documents the exit codes,
and the README's command table lists exactly the commands `tether --help` has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from actors.cli.main import EXIT_CODES_HELP, build

README = Path(__file__).resolve().parents[2] / "README.md"


def leaves(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        out = []
        for name, sub in sorted(command.commands.items()):
            out.extend(leaves(sub, (*path, name)))
        return out
    return [(path, command)]


COMMANDS = leaves(build())
IDS = [" ".join(path) for path, _ in COMMANDS]
WITH_SETTINGS = [(path, c) for path, c in COMMANDS if any(p.name == "partitions" for p in c.params)]


def invoke(*args: str, env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(build(), list(args), env={"COLUMNS": "200", **(env or {})})


def test_the_tree_is_what_the_contract_is_checked_over() -> None:
    # Every group, so a command added later is covered (and this test notices a lost one).
    assert {path[0] for path, _ in COMMANDS} >= {"serve", "demo", "sessions", "awakeable", "dlq", "saga", "kafka"}
    assert len(WITH_SETTINGS) >= 15


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_and_wrong_options(path: tuple[str, ...], command: click.Command) -> None:
    for flag in ("--help", "-h"):
        result = invoke(*path, flag)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
    wrong = invoke(*path, "--no-such-option")
    assert wrong.exit_code == 2
    assert "No such option" in wrong.output and "Traceback" not in wrong.output


@pytest.mark.parametrize(("path", "command"), WITH_SETTINGS, ids=[" ".join(p) for p, _ in WITH_SETTINGS])
def test_bad_settings_are_exit_2_without_a_traceback(
    path: tuple[str, ...], command: click.Command, tmp_path: Path
) -> None:
    args = [*path, *(["x"] * sum(isinstance(p, click.Argument) and p.required for p in command.params))]
    for option in command.params:  # required options get a plausible value
        if isinstance(option, click.Option) and option.required:
            args += [option.opts[0], "1" if isinstance(option.type, click.types.IntParamType) else "x"]
    bad_env = invoke(*args, env={"TETHER_PARTITIONS": "many", "TETHER_DATA_DIR": str(tmp_path)})
    assert bad_env.exit_code == 2, bad_env.output
    assert "TETHER_PARTITIONS" in bad_env.output and "Traceback" not in bad_env.output
    assert bad_env.exception is None or isinstance(bad_env.exception, SystemExit)
    for partitions in ("0", "-1"):
        bad_flag = invoke(*args, "--partitions", partitions, env={"TETHER_DATA_DIR": str(tmp_path)})
        assert bad_flag.exit_code == 2, bad_flag.output
        assert "--partitions" in bad_flag.output and "Traceback" not in bad_flag.output


def test_a_bad_payload_is_exit_2(tmp_path: Path) -> None:
    result = invoke(
        "sessions", "restart", "agent", "k1", "--from-step", "1", "--payload", "{oops", "--data-dir", str(tmp_path)
    )
    assert result.exit_code == 2 and "--payload must be JSON" in result.output
    assert isinstance(result.exception, SystemExit)


def test_version_and_exit_codes_in_help() -> None:
    version = invoke("--version")
    assert version.exit_code == 0 and re.fullmatch(r"tether \S+.*\n", version.output)
    top = invoke("--help")
    assert top.exit_code == 0
    flat = " ".join(top.output.split())
    assert " ".join(EXIT_CODES_HELP.split()) in flat


def readme_commands() -> set[tuple[str, ...]]:
    """The commands the README's command table names.

    A cell's codes are read in order: ``tether GROUP a/b/c ...`` names subcommands of GROUP (and
    sets it for what follows: ``status``, ``reject ID REASON``); ``tether COMMAND`` a command.
    """
    groups = {path[0] for path, _ in COMMANDS if len(path) > 1}
    text = README.read_text(encoding="utf-8")
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    found: set[tuple[str, ...]] = set()
    for line in section.splitlines():
        if not line.startswith("| `tether "):
            continue
        group: str | None = None
        for code in re.findall(r"`([^`]+)`", line.split("|")[1]):
            words = code.split()
            if words[0] == "tether":
                if words[1] not in groups:
                    found.add((words[1],))
                    continue
                group, words = words[1], words[2:]
            if group is None or not words:
                continue
            for name in words[0].split("/"):
                if re.fullmatch(r"[a-z]+", name):
                    found.add((group, name))
    return found


def test_the_readme_command_table_matches_tether_help() -> None:
    documented = readme_commands()
    actual = {path for path, _ in COMMANDS}
    assert sorted(actual - documented) == [], "commands `tether --help` has that the README table does not list"
    assert sorted(documented - actual) == [], "commands the README table lists that `tether --help` does not have"


# The commands without --json: the demo, a show for people, and the web console, a server for browsers.
NO_JSON = {("demo",), ("console",)}
JSON_COMMANDS = [(path, c) for path, c in WITH_SETTINGS if path not in NO_JSON]


def test_every_command_has_json_but_the_listed_few() -> None:
    missing = sorted(
        " ".join(path) for path, c in COMMANDS if path not in NO_JSON and not any(p.name == "as_json" for p in c.params)
    )
    assert missing == []


@pytest.mark.parametrize(("path", "command"), JSON_COMMANDS, ids=[" ".join(p) for p, _ in JSON_COMMANDS])
def test_errors_under_json_are_one_json_document(path: tuple[str, ...], command: click.Command, tmp_path: Path) -> None:
    args = [*path, *(["x"] * sum(isinstance(p, click.Argument) and p.required for p in command.params))]
    for option in command.params:
        if isinstance(option, click.Option) and option.required:
            args += [option.opts[0], "1" if isinstance(option.type, click.types.IntParamType) else "x"]
    result = invoke(*args, "--json", env={"TETHER_PARTITIONS": "many", "TETHER_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["error"]["exit_code"] == 2 and "TETHER_PARTITIONS" in document["error"]["message"]
    assert set(document["error"]) == {"type", "message", "exit_code"}


def test_kafka_commands_speak_json_too(tmp_path: Path) -> None:
    status = invoke("kafka", "status", "--data-dir", str(tmp_path / "none"), "--json")
    assert status.exit_code == 1 and json.loads(status.stdout)["running"] is False
    down = invoke("kafka", "down", "--data-dir", str(tmp_path / "none"), "--json")
    assert down.exit_code == 0 and json.loads(down.stdout)["stopped"] is False
    logs = invoke("kafka", "logs", "--data-dir", str(tmp_path / "none"), "--json")
    assert logs.exit_code == 1 and json.loads(logs.stdout)["error"]["exit_code"] == 1
