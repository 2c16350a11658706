"""Offline runs of the core pipeline: over an events file (``appliancectl replay``) or
over the live journal (``report``, ``export``). Both sort by time, equal times in input
order, exactly as the live core takes them."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .config.schema import Config
from .events import CORE_INPUT_TYPES, LineErrors, read_lines
from .journal import Journal
from .metrics import summary
from .pipeline import run
from .point import Contact
from .timefmt import iso_ms


def contact_json(c: Contact) -> dict:
    return {
        "id": c.id,
        "point": c.point,
        "opened": iso_ms(c.opened),
        "closed": iso_ms(c.closed),
        "duration_s": c.duration_ms / 1000,
        "owner": c.owner,
        "rating": c.rating.value if c.rating else None,
        "sales": [s.receipt for s in c.sales],
        "tags": c.tags,
    }


def replay_file(cfg: Config, events_path: str) -> tuple[list, LineErrors, int]:
    """Decode, sort and run. Returns (records, bad lines, events taken)."""
    with open(events_path, "rb") as f:
        numbered, errors = read_lines(f, cfg)
    taken = [(ev.ts, n, ev.type, ev.point, ev.data) for n, ev in numbered]
    taken.sort(key=lambda e: (e[0], e[1]))
    refused: list[tuple[str, str]] = []
    records = run(cfg, ((t, typ, pt, data, f"line{n}") for t, n, typ, pt, data in taken), rejected=refused)
    for ref, why in refused:
        errors.append((int(ref[4:]), why))
    errors.sort()
    return records, errors, len(taken) - len(refused)


def replay_journal(cfg: Config, journal: Journal, until: int | None = None) -> list:
    """The journal's records as the live core sees them at time ``until`` (usually now):
    timers up to then have fired, contacts still open then stay uncounted."""
    rows = [(e.ts, e.seq, e.type, e.point, e.data, e.id) for e in journal.iter_all(CORE_INPUT_TYPES)]
    rows.sort(key=lambda e: (e[0], e[1]))
    return run(cfg, ((t, typ, pt, data, ref) for t, _, typ, pt, data, ref in rows), until)


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


def write_atomic(path: Path, text: str) -> None:
    """temp file + fsync + rename + fsync(dir): the file is whole or absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
