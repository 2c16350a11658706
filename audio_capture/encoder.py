"""Clip files: encoded with PyAV (Opus in Ogg by default; WAV LPCM 16-bit mono as the
seed products; FLAC), streamed in bounded memory, written atomically (temp file + fsync +
rename), with size and sha256."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import av

from appliance.files import atomic_path

FORMATS = {  # format -> (container, codec, file extension)
    "opus": ("ogg", "libopus", ".ogg"),
    "wav": ("wav", "pcm_s16le", ".wav"),
    "flac": ("flac", "flac", ".flac"),
}


@dataclass(frozen=True, slots=True)
class ClipFile:
    path: Path
    format: str
    size: int
    sha256: str
    duration_s: float


def extension(fmt: str) -> str:
    return FORMATS[fmt][2]


def encode(chunks: Iterable[bytes], path: str | Path, fmt: str = "opus", rate: int = 16000,
           bitrate_kbps: int = 24) -> ClipFile:
    """S16_LE mono chunks -> an encoded file at path, atomically."""
    container_fmt, codec, _ = FORMATS[fmt]
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=container_fmt) as out:
            stream = out.add_stream(codec, rate=rate)
            stream.layout = "mono"
            if fmt == "opus":
                stream.bit_rate = bitrate_kbps * 1000
                stream.options = {"application": "voip"}
            pts = 0
            for data in chunks:
                n = len(data) // 2
                if n == 0:
                    continue
                frame = av.AudioFrame(format="s16", layout="mono", samples=n)
                frame.planes[0].update(data[: n * 2])
                frame.sample_rate = rate
                frame.pts = pts
                pts += n
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
        size = tmp.stat().st_size
    return ClipFile(path, fmt, size, digest.hexdigest(), pts / rate)


def decode_pcm(path: str | Path, rate: int = 16000) -> bytes:
    """A clip back to S16_LE mono at rate (for tests, `audio test` and checks)."""
    out = bytearray()
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                out += bytes(f.planes[0])[: f.samples * 2]
        for f in resampler.resample(None):
            out += bytes(f.planes[0])[: f.samples * 2]
    return bytes(out)
