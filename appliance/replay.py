"""Offline runs of the core pipeline: over an events file (``appliancectl replay``) or
over the live journal (``report``, ``export``). Both sort by time, equal times in input
order, exactly as the live core takes them."""
from __future__ import annotations

import json
from pathlib import Path

from .config.schema import Config
from .files import write_atomic
from .events import LineErrors, read_lines
from .journal import Journal
from .metrics import summary
from .pipeline import InputEvent, run
from .point import contact_json
from .vocabulary import CORE_INPUT_TYPES


def replay_file(cfg: Config, events_path: str, inputs: list | None = None) -> tuple[list, LineErrors, int]:
    """Decode, sort and run. Returns (records, bad lines, events taken); the input events,
    in the order they were taken, are added to ``inputs`` when given."""
    with open(events_path, "rb") as f:
        numbered, errors = read_lines(f, cfg)
    taken = sorted((InputEvent(ev.ts, n, ev.type, ev.point, ev.data, f"line{n}") for n, ev in numbered),
                   key=InputEvent.sort_key)
    refused: list[tuple[str, str]] = []
    records = run(cfg, taken, rejected=refused)
    if inputs is not None:
        no = {ref for ref, _ in refused}
        inputs.extend(ev for ev in taken if ev.ref not in no)
    for ref, why in refused:
        errors.append((int(ref[4:]), why))
    errors.sort()
    return records, errors, len(taken) - len(refused)


def replay_journal(cfg: Config, journal: Journal, until: int | None = None) -> list:
    """The journal's records as the live core sees them at time ``until`` (usually now):
    timers up to then have fired, contacts still open then stay uncounted."""
    rows = sorted(map(InputEvent.from_journal, journal.iter_all(CORE_INPUT_TYPES)), key=InputEvent.sort_key)
    return run(cfg, rows, until)


def write_outputs(cfg: Config, records: list, out_dir: str | Path, clips: dict[str, str] | None = None) -> dict:
    """contacts.jsonl and metrics.json; with ``clips`` (contact id -> clip file) each
    contact line also names its clip."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    contacts = [r for k, r in records if k == "contact"]
    contacts.sort(key=lambda c: (c.opened, c.point))
    rows = []
    for c in contacts:
        row = contact_json(c)
        if clips is not None:
            row["clip"] = clips.get(c.id)
        rows.append(row)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    metrics = summary(records, cfg.points)
    write_atomic(out / "contacts.jsonl", lines)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics
