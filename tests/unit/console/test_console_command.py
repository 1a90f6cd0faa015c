"""`tether console`: its options, where it binds by default, and the README's screenshots."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from console.cli import console

ROOT = Path(__file__).resolve().parents[3]


def test_it_is_a_tether_command_and_binds_localhost_read_only_without_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keep_logging: None
) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["tether.commands"]["console"] == "console.cli:console"
    ran: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        ran.update(kwargs, app=app)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("TETHER_CONSOLE__TOKEN", raising=False)
    result = CliRunner().invoke(console, ["--data-dir", str(tmp_path), "-n", "shop"])
    assert result.exit_code == 0, result.output
    assert ran["host"] == "127.0.0.1" and ran["port"] == 8088
    assert ran["app"].state.settings.namespace == "shop"
    assert ran["app"].state.config.actions_off_reason.startswith("no token is configured")
    assert "read-only" in result.output

    monkeypatch.setenv("TETHER_CONSOLE__TOKEN", "t0ken")
    result = CliRunner().invoke(console, ["--data-dir", str(tmp_path), "--read-only", "--port", "9000"])
    assert result.exit_code == 0, result.output
    assert ran["port"] == 9000 and "started read-only" in ran["app"].state.config.actions_off_reason
    result = CliRunner().invoke(console, ["--data-dir", str(tmp_path), "--host", "console.internal"])
    assert result.exit_code == 0, result.output
    assert ran["app"].state.config.allowed_hosts == ("127.0.0.1", "localhost", "console.internal")


def test_the_readme_shows_the_screenshots_the_browser_test_takes() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\((docs/console/[\w-]+\.png)\)", readme)
    assert len(shown) >= 3
    for path in shown:
        assert (ROOT / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    browser_test = (ROOT / "tests/integration/test_console_browser.py").read_text()
    for path in shown:
        assert f'("{Path(path).stem}", ' in browser_test, f"{path} is not taken by the browser test"


def test_a_bad_console_setting_is_exit_2_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TETHER_CONSOLE__PAGE_SIZE", "lots")
    result = CliRunner().invoke(console, ["--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "TETHER_CONSOLE__" in result.output and "page_size" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_cli_contract_holds_for_the_console_command(tmp_path: Path) -> None:
    from actors.cli.main import build

    group = build()
    group.add_command(console, "console")  # as the tether.commands entry point adds it once installed
    run = CliRunner()
    for flag in ("--help", "-h"):
        assert run.invoke(group, ["console", flag]).exit_code == 0
    wrong = run.invoke(group, ["console", "--no-such-option"])
    assert wrong.exit_code == 2 and "No such option" in wrong.output
    bad = run.invoke(group, ["console"], env={"TETHER_PARTITIONS": "many", "TETHER_DATA_DIR": str(tmp_path)})
    assert bad.exit_code == 2 and "TETHER_PARTITIONS" in bad.output and "Traceback" not in bad.output
    for partitions in ("0", "-1"):
        flag = run.invoke(group, ["console", "--partitions", partitions, "--data-dir", str(tmp_path)])
        assert flag.exit_code == 2 and "--partitions" in flag.output
    contract = (ROOT / "tests/unit/test_cli_contract.py").read_text()
    assert '("console",)' in contract  # listed among the commands without --json
