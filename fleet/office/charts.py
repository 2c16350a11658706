"""Charts as server-rendered SVG: no script, readable on a phone, a few kB on a slow link."""
from __future__ import annotations

from html import escape

from markupsafe import Markup


def bars(title: str, labels: list[str], values: list[int], share: list[float | None] | None = None,
         share_label: str = "", width: int = 720, height: int = 200) -> Markup:
    """Bars of ``values`` (counts) with, when given, a line of ``share`` (0–1) over them."""
    n = max(1, len(values))
    top = max(values or [0]) or 1
    pad_l, pad_b, pad_t = 36, 34, 18
    w, h = width - pad_l - 8, height - pad_b - pad_t
    step = w / n
    bw = max(1.0, step * 0.72)
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}"'
           f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
           f'<text x="{pad_l}" y="12" class="ct">{escape(title)}</text>',
           f'<text x="{pad_l - 4}" y="{pad_t + 4}" class="ax" text-anchor="end">{top}</text>',
           f'<text x="{pad_l - 4}" y="{pad_t + h}" class="ax" text-anchor="end">0</text>']
    every = max(1, n // 12)
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x = pad_l + i * step + (step - bw) / 2
        bh = h * v / top
        out.append(f'<rect x="{x:.1f}" y="{pad_t + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" class="bar">'
                   f'<title>{escape(lab)}: {v}</title></rect>')
        if i % every == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{height - pad_b + 14}" class="ax" text-anchor="middle">'
                       f'{escape(lab)}</text>')
    if share:
        pts = [(pad_l + i * step + step / 2, pad_t + h * (1 - s)) for i, s in enumerate(share) if s is not None]
        if pts:
            out.append('<polyline class="line" fill="none" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            out.append(f'<text x="{width - 8}" y="12" class="ax line-label" text-anchor="end">'
                       f'— {escape(share_label)} (0–100 %)</text>')
    out.append("</svg>")
    return Markup("".join(out))
