"""Pulse trains: alternating (level, duration µs) runs, as a receiver module shows them.

The plain-text fixture format (STYLE 5) is one JSON object per line with a ``pulses``
key: ``{"pulses": [[1, 350], [0, 1050], ...]}``; other keys are ignored.
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from appliance.errors import ApplianceError


class PulseError(ApplianceError, ValueError):
    pass


def parse_pulses(obj: object) -> list[tuple[int, int]]:
    """Validate a ``pulses`` list: [[level 0|1, duration µs ≥ 0], ...]."""
    if not isinstance(obj, list):
        raise PulseError('"pulses" must be a list of [level, duration_us] pairs')
    out = []
    for i, p in enumerate(obj):
        if (not isinstance(p, (list, tuple)) or len(p) != 2 or p[0] not in (0, 1)
                or isinstance(p[0], bool) or not isinstance(p[1], int) or isinstance(p[1], bool) or p[1] < 0):
            raise PulseError(f"pulses[{i}]: expected [0 or 1, a duration in µs ≥ 0], got {json.dumps(p)}")
        out.append((p[0], p[1]))
    return out


def read_pulse_file(lines: Iterable[bytes | str]) -> Iterator[tuple[int, list[tuple[int, int]] | PulseError]]:
    """(line number, pulses or the error) for every non-blank line."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "pulses" not in obj:
                raise PulseError('expected an object with a "pulses" key')
            yield n, parse_pulses(obj["pulses"])
        except (ValueError, PulseError) as exc:
            yield n, exc if isinstance(exc, PulseError) else PulseError(f"not valid JSON: {exc}")


def merge_runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join neighbouring runs of one level and drop empty ones (a train alternates)."""
    out: list[list[int]] = []
    for level, d in runs:
        if d <= 0:
            continue
        if out and out[-1][0] == level:
            out[-1][1] += d
        else:
            out.append([level, d])
    return [(lv, d) for lv, d in out]


def to_ook(pulses: list[tuple[int, int]], sample_rate: int = 250_000) -> str:
    """A pulse train in rtl_433's OOK text format (``rtl_433 -r file.ook``)."""
    lines = []
    i = 1 if pulses and pulses[0][0] == 0 else 0
    while i < len(pulses):
        mark = pulses[i][1]
        gap = pulses[i + 1][1] if i + 1 < len(pulses) else 10_000
        lines.append(f"{mark} {gap}")
        i += 2
    head = (f";pulse data\n;version 1\n;timescale 1us\n;ook {len(lines)} pulses\n;freq1 433920000\n"
            f";centerfreq 433920000 Hz\n;samplerate {sample_rate} Hz\n;sampledepth 8 bits\n")
    return head + "\n".join(lines) + "\n;end\n"
