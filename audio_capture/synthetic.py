"""A synthetic microphone for the demo and the benchmarks: syllable-like bursts of voiced,
band-limited sound with pauses, as a WAV file the file source plays in real time."""
from __future__ import annotations

import array
import math
import random
import wave
from pathlib import Path


def speech_wav(path: str | Path, seconds: int = 30, rate: int = 16000, seed: int = 7) -> Path:
    """``seconds`` of speech-like sound, 16-bit mono at ``rate``."""
    rnd = random.Random(seed)
    samples = array.array("h")
    t = 0
    while t < seconds * rate:
        n = int(rate * rnd.uniform(0.08, 0.3))
        amp = rnd.choice((0, 0, 2500, 6000))
        f = rnd.uniform(150, 400)
        prev = 0.0
        for i in range(n):
            prev = 0.7 * prev + 0.3 * rnd.uniform(-1, 1)
            env = math.sin(math.pi * i / n)
            samples.append(int(amp * env * (0.6 * math.sin(2 * math.pi * f * (t + i) / rate) + 0.4 * prev)))
        t += n
    path = Path(path)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path
