"""Test signals: a WAV of silence with short tone bursts at known instants."""
from __future__ import annotations

import math
import struct
import wave
from pathlib import Path


def burst_wav(path: Path, seconds: float, bursts_s: list[float], rate: int = 16000, burst_ms: int = 40,
              freq: float = 1000.0, noise: int = 0) -> Path:
    n = round(seconds * rate)
    samples = [0] * n
    for b in bursts_s:
        i0 = round(b * rate)
        for i in range(i0, min(n, i0 + burst_ms * rate // 1000)):
            samples[i] = int(12000 * math.sin(2 * math.pi * freq * (i - i0) / rate))
    if noise:
        import random
        rnd = random.Random(1)
        samples = [s + rnd.randint(-noise, noise) for s in samples]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack(f"<{n}h", *samples))
    return path


def onsets(pcm: bytes, rate: int = 16000, threshold: int = 3000) -> list[float]:
    """Start times (s) of the bursts in S16 mono PCM."""
    n = len(pcm) // 2
    vals = struct.unpack(f"<{n}h", pcm[: n * 2])
    out = []
    quiet = rate // 10
    last = -quiet
    for i, v in enumerate(vals):
        if abs(v) >= threshold:
            if i - last >= quiet:
                out.append(i / rate)
            last = i
    return out
