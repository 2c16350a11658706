"""Test signals: a WAV of silence with short tone bursts at known instants."""
from __future__ import annotations

import math
import struct
import wave
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def burst_wav(path: Path, seconds: float, bursts_s: list[float], rate: int = 16000, burst_ms: int = 40,
              freq: float = 1000.0) -> Path:
    n = round(seconds * rate)
    pcm = bytearray(n * 2)
    m = burst_ms * rate // 1000
    burst = struct.pack(f"<{m}h", *(int(12000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(m)))
    for b in bursts_s:
        i0 = round(b * rate)
        part = burst[: max(0, min(m, n - i0)) * 2]
        pcm[i0 * 2:i0 * 2 + len(part)] = part
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(pcm))
    return path


def onsets(pcm: bytes, rate: int = 16000, threshold: int = 3000) -> list[float]:
    """Start times (s) of the bursts in S16 mono PCM (first sample ≥ threshold after
    at least 100 ms below it)."""
    block = rate // 100
    quiet = rate // 10
    out: list[float] = []
    last = -quiet
    n = len(pcm) // 2
    for b0 in range(0, n, block):
        chunk = pcm[b0 * 2:min(n, b0 + block) * 2]
        if audioop.max(chunk, 2) < threshold:
            continue
        vals = struct.unpack(f"<{len(chunk) // 2}h", chunk)
        for k, v in enumerate(vals):
            if abs(v) >= threshold:
                i = b0 + k
                if i - last >= quiet:
                    out.append(i / rate)
                last = i
    return out
