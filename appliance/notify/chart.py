"""A report's chart as a PNG: contacts per hour (grey bars) with the negative ones in red,
hour labels below. Written with zlib alone (no chart library in the daemon's memory), and run
in a short-lived process of its own by the courier: ``python -m appliance.notify.chart``
reads ``{"bars": [[label, contacts, negative], ...], "title": "..."}`` on stdin and writes the
PNG to stdout."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

W, H = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 28, 30
BG, AXIS, BAR, NEG, INK = (255, 255, 255), (90, 90, 90), (176, 190, 197), (211, 47, 47), (33, 33, 33)

# a 3x5 font: digits, ':' and '-', rows top to bottom, 3 bits each
FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ":": (0, 2, 0, 2, 0), "-": (0, 0, 7, 0, 0), " ": (0, 0, 0, 0, 0),
}


class Canvas:
    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.px = bytearray(bytes(BG) * (w * h))

    def rect(self, x0: int, y0: int, x1: int, y1: int, rgb: tuple[int, int, int]) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        row = bytes(rgb) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x: int, y: int, s: str, rgb: tuple[int, int, int], scale: int = 2) -> None:
        for ch in s:
            glyph = FONT.get(ch, FONT[" "])
            for r, bits in enumerate(glyph):
                for c in range(3):
                    if bits & (4 >> c):
                        self.rect(x + c * scale, y + r * scale, x + (c + 1) * scale, y + (r + 1) * scale, rgb)
            x += 4 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def render(bars: list[tuple[str, int, int]]) -> bytes:
    """Bars of contacts per period, the negative share of each in red; the labels' last 5
    characters (the hour) under every other bar, the peak on the left axis."""
    c = Canvas(W, H)
    x0, y0, x1, y1 = LEFT, H - BOTTOM, W - RIGHT, TOP
    c.rect(x0 - 1, y1, x0, y0 + 1, AXIS)
    c.rect(x0 - 1, y0, x1, y0 + 1, AXIS)
    peak = max([n for _, n, _ in bars] + [1])
    c.text(4, y1, str(peak)[:4], INK)
    c.text(4, y0 - 10, "0", INK)
    if bars:
        step = (x1 - x0) / len(bars)
        width = max(1, int(step * 0.7))
        for i, (label, n, neg) in enumerate(bars):
            left = int(x0 + i * step + (step - width) / 2)
            top = y0 - round((y0 - y1) * n / peak)
            c.rect(left, top, left + width, y0, BAR)
            if neg:
                c.rect(left, y0 - round((y0 - y1) * neg / peak), left + width, y0, NEG)
            if i % max(1, len(bars) // 8) == 0:
                c.text(left, y0 + 8, label[-5:], INK, 1 if step < 24 else 2)
    return c.png()


def render_in_child(bars: list[tuple[str, int, int]], timeout_s: float = 30.0) -> bytes:
    """:func:`render` in a short-lived process: its memory goes back when it exits."""
    r = subprocess.run([sys.executable, "-m", "appliance.notify.chart"], input=json.dumps({"bars": bars}).encode(),
                       capture_output=True, timeout=timeout_s, check=False)
    if r.returncode != 0 or not r.stdout.startswith(b"\x89PNG"):
        raise RuntimeError(f"chart: exit {r.returncode}: {r.stderr.decode(errors='replace')[-300:]}")
    return r.stdout


def main() -> int:
    doc = json.load(sys.stdin)
    sys.stdout.buffer.write(render([(str(a), int(b), int(c)) for a, b, c in doc["bars"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
