"""The results files: where they are, how a run is merged into them."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .machine import machine_info
from .paths import LATEST_JSON, RUNS_DIR

SCHEMA_VERSION = 1
"""Version of the layout of latest.json; bump it when a reader would misread an old file."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def workload_result(
    system: str, params: dict[str, Any], runs: list[dict[str, Any]], median: dict[str, Any]
) -> dict[str, Any]:
    """One workload's entry: its parameters, the median run without its check (each run keeps
    its own), every run, and whether all of them were correct."""
    return {
        "system": system,
        "params": params,
        "median": {k: v for k, v in median.items() if k != "check"},
        "runs": runs,
        "correct": all(r["correct"] for r in runs),
    }


def load_results(path: Path = LATEST_JSON) -> dict[str, Any]:
    """The results file as a dict (an empty skeleton if it does not exist yet)."""
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        data.setdefault("sections", {})
        return data
    return {"schema": SCHEMA_VERSION, "sections": {}}


def record(
    section: str,
    workloads: dict[str, dict[str, Any]],
    *,
    path: Path = LATEST_JSON,
    machine: dict[str, Any] | None = None,
) -> Path:
    """Merge workload results into one section of the results file, leaving the rest alone.

    ``section`` is who was measured (``tether``, ``restate``, ``raw_kafka``); each entry of
    ``workloads`` replaces that workload's entry in the section, so re-running one workload
    updates only it. The machine description is refreshed on every write, and a timestamped
    copy of the written section goes under ``results/runs/`` (gitignored).

    Args:
        section: The system measured.
        workloads: Workload name -> its figures (parameters, runs, median, ...).
        path: The results file.
        machine: Machine info; measured afresh when not given.

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_results(path)
    data["schema"] = SCHEMA_VERSION
    data["machine"] = machine or machine_info()
    data["updated_at"] = utc_now()
    sec = data["sections"].setdefault(section, {})
    stamped = {}
    for name, figures in workloads.items():
        entry = {"recorded_at": utc_now(), **figures}
        sec[name] = entry
        stamped[name] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    (RUNS_DIR / f"{stamp}-{path.stem}-{section}.json").write_text(
        json.dumps(
            {"machine": data["machine"], "section": section, "workloads": stamped},
            indent=2,
            default=_json_default,
        )
        + "\n"
    )
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    raise TypeError(f"cannot serialise {type(obj).__name__}")
