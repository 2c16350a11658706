"""A WAV file as a microphone: in real time (demo, daemon tests) or as fast as the
consumer reads (replay, benchmarks). The first sample is at ``start_wall_us``."""
from __future__ import annotations

import time
import wave

from .base import AudioError, AudioSource, Chunk


class FileSource(AudioSource):
    name = "file"

    def __init__(self, path: str, start_wall_us: int | None = None, realtime: bool = False,
                 period_s: float = 0.1, loop: bool = False):
        try:
            self.wav = wave.open(str(path), "rb")
        except (OSError, wave.Error, EOFError) as exc:
            raise AudioError(f"{path}: not a readable WAV file: {exc}") from None
        if self.wav.getnchannels() != 1 or self.wav.getsampwidth() != 2:
            raise AudioError(f"{path}: expected 16-bit mono WAV, got {self.wav.getnchannels()} channel(s) "
                             f"of {8 * self.wav.getsampwidth()} bits")
        self.rate = self.wav.getframerate()
        if not 8000 <= self.rate <= 192_000:
            raise AudioError(f"{path}: sample rate {self.rate} Hz is not a microphone's (8000–192000)")
        if self.wav.getnframes() == 0:
            raise AudioError(f"{path}: holds no audio")
        self.period = max(1, round(period_s * self.rate))
        self.realtime = realtime
        self.loop = loop
        self.t0_mono = time.monotonic_ns()
        self.start_wall_us = start_wall_us if start_wall_us is not None else time.time_ns() // 1000
        self.pos = 0

    def read(self) -> Chunk | None:
        data = self.wav.readframes(self.period)
        if not data:
            if not self.loop:
                return None
            self.wav.rewind()
            data = self.wav.readframes(self.period)
        first = self.pos
        self.pos += len(data) // 2
        mono = self.t0_mono + first * 1_000_000_000 // self.rate
        if self.realtime:
            wait = (self.t0_mono + self.pos * 1_000_000_000 // self.rate - time.monotonic_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)
        return Chunk(data, mono, self.start_wall_us + first * 1_000_000 // self.rate)

    def close(self) -> None:
        self.wav.close()
