"""A USB / I2S / webcam microphone through ALSA (pyalsaaudio): S16_LE mono at 16 or
8 kHz, one period at a time. Overruns (-EPIPE) are reported as a gap before the next
chunk; a vanished device raises AudioError (the daemon re-opens it with backoff)."""
from __future__ import annotations

import errno
import time

from .base import AudioError, AudioSource, Chunk


class AlsaSource(AudioSource):
    name = "alsa"

    def __init__(self, device: str = "default", rate: int = 16000, period_s: float = 0.1, periods: int = 10):
        """One read per ``period_s`` (ten a second: an idle box wakes little), a buffer of
        ``periods`` of them (a second: a stall of the capture thread that long loses nothing)."""
        try:
            import alsaaudio
        except ImportError as exc:
            raise AudioError(f"pyalsaaudio is not installed: {exc}") from None
        self.alsaaudio = alsaaudio
        self.rate = rate
        self.period = max(16, round(period_s * rate))
        self.device = device
        try:
            self.pcm = alsaaudio.PCM(type=alsaaudio.PCM_CAPTURE, mode=alsaaudio.PCM_NORMAL, device=device,
                                     channels=1, rate=rate, format=alsaaudio.PCM_FORMAT_S16_LE,
                                     periodsize=self.period, periods=periods)
        except alsaaudio.ALSAAudioError as exc:
            raise AudioError(f"cannot open ALSA capture device {device!r}: {exc}") from None
        got = self.pcm.info() if hasattr(self.pcm, "info") else {}
        if got.get("rate", rate) != rate:
            raise AudioError(f"ALSA device {device!r} gives {got.get('rate')} Hz, not {rate}")
        self.gap = False

    def read(self) -> Chunk | None:
        try:
            n, data = self.pcm.read()
        except self.alsaaudio.ALSAAudioError as exc:
            raise AudioError(f"ALSA capture from {self.device!r} failed: {exc}") from None
        mono, wall = time.monotonic_ns(), time.time_ns() // 1000
        if n < 0:
            if n == -errno.EPIPE:          # overrun: samples were lost
                self.gap = True
                return Chunk(b"", mono, wall, True)
            raise AudioError(f"ALSA capture from {self.device!r} failed: {errno.errorcode.get(-n, n)}")
        if n == 0:
            return Chunk(b"", mono, wall)
        data = data[: n * 2]
        span_ns = n * 1_000_000_000 // self.rate
        gap, self.gap = self.gap, False
        return Chunk(data, mono - span_ns, wall - span_ns // 1000, gap)

    def close(self) -> None:
        try:
            self.pcm.close()
        except Exception:  # noqa: BLE001 - closing must not raise
            pass
