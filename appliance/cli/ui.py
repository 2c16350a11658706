"""Terminal output: colours when the output is a terminal (and NO_COLOR is unset), tables."""
from __future__ import annotations

import os
import sys
from typing import Sequence, TextIO

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34",
          "magenta": "35", "cyan": "36", "grey": "90"}


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), *range(0x7f, 0xa0)) if c != 0x09}
JSON_C1 = {c: f"\\u{c:04x}" for c in range(0x7f, 0xa0)}


EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT, EXIT_IO = 0, 1, 2, 3
"""appliancectl's exit codes: done; done in part; bad input (nothing changed); I/O failure."""


def printable(text: object) -> str:
    """Journalled text as a terminal may show it: control characters (a till could write
    escape sequences into a technician's terminal) become visible \\xNN escapes."""
    return str(text).translate(_CONTROLS)


def json_line(obj: object) -> str:
    """One JSON line, non-ASCII kept readable, C1 controls escaped too (json escapes C0)."""
    import json
    return json.dumps(obj, ensure_ascii=False).translate(JSON_C1)


def use_colour(stream: TextIO | None = None) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = sys.stdout if stream is None else stream      # the one of now (tests swap it)
    try:
        return hasattr(stream, "isatty") and stream.isatty()
    except ValueError:                                      # closed
        return False


class Style:
    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.enabled = use_colour(stream) if enabled is None else enabled

    def __call__(self, text: object, *styles: str) -> str:
        if not self.enabled or not styles:
            return str(text)
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def _visible_len(s: str) -> int:
    import re
    return len(re.sub(r"\x1b\[[0-9;]*m", "", s))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], style: Style | None = None,
          align_right: Sequence[bool] | None = None) -> str:
    style = style or Style(False)
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([_visible_len(h)] + [_visible_len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = align_right or [False] * len(headers)

    def line(values: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(values):
            pad = " " * (widths[i] - _visible_len(v))
            out.append(pad + v if right[i] else v + pad)
        return "  ".join(out).rstrip()
    head = line([style(h, "bold") for h in headers])
    rule = style("  ".join("─" * w for w in widths), "grey")
    return "\n".join([head, rule] + [line(r) for r in cells])


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


def num(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"
