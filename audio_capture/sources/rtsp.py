"""An IP camera's (or any RTSP / HTTP(S)) audio through PyAV, resampled to S16_LE mono at
the configured rate. The stream ending or stalling raises AudioError, so the capture loop
reconnects with backoff when the camera comes back."""
from __future__ import annotations

import time

import av

from .base import AudioError, AudioSource, Chunk


class RtspSource(AudioSource):
    name = "rtsp"

    def __init__(self, url: str, rate: int = 16000, timeout_s: float = 5.0):
        if not url:
            raise AudioError("[audio] url is empty: give the camera's rtsp:// or http(s):// address")
        self.url = url
        self.rate = rate
        options = {"rtsp_transport": "tcp"} if url.startswith("rtsp") else {}
        try:
            self.container = av.open(url, options=options, timeout=(timeout_s, timeout_s))
            self.stream = self.container.streams.audio[0]
        except (av.FFmpegError, IndexError, OSError) as exc:
            raise AudioError(f"cannot open {self._safe_url()}: {exc}") from None
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        self.packets = self.container.demux(self.stream)

    def _safe_url(self) -> str:
        """The URL without credentials (never in logs)."""
        if "@" in self.url and "://" in self.url:
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return self.url

    def read(self) -> Chunk | None:
        while True:
            try:
                packet = next(self.packets)
            except StopIteration:
                raise AudioError(f"{self._safe_url()}: the stream ended") from None
            except (av.FFmpegError, OSError) as exc:
                raise AudioError(f"{self._safe_url()}: {exc}") from None
            out = bytearray()
            try:
                for frame in packet.decode():
                    for f in self.resampler.resample(frame):
                        out += bytes(f.planes[0])[: f.samples * 2]
            except (av.FFmpegError, ValueError) as exc:
                raise AudioError(f"{self._safe_url()}: cannot decode: {exc}") from None
            if out:
                n = len(out) // 2
                span_ns = n * 1_000_000_000 // self.rate
                return Chunk(bytes(out), time.monotonic_ns() - span_ns, time.time_ns() // 1000 - span_ns // 1000)

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001
            pass
