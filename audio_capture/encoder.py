"""Clip files: encoded with PyAV (Opus in Ogg by default; WAV LPCM 16-bit mono as the
seed products; FLAC), streamed in bounded memory, written atomically (temp file + fsync +
rename), with size and sha256.

The audio daemon encodes in a short-lived child (``encode_in_child``: ``python -m
audio_capture.encoder``): PyAV and its libraries cost a process about 21 MB of RSS, which the
daemon then never carries between clips — on a 512 MB Pi that matters more than the child's
start-up (a tenth of a second on a desktop core, about a second on a Pi Zero 2 W)."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from appliance.files import atomic_path

from .sources.base import AudioError

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
    import av
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
    import av
    out = bytearray()
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in c.decode(audio=0):
            for f in resampler.resample(frame):
                out += bytes(f.planes[0])[: f.samples * 2]
        for f in resampler.resample(None):
            out += bytes(f.planes[0])[: f.samples * 2]
    return bytes(out)


CHILD_TIMEOUT_S = 300.0
EX_IOERR = 74


def encode_in_child(chunks: Iterable[bytes], path: str | Path, fmt: str = "opus", rate: int = 16000,
                    bitrate_kbps: int = 24) -> ClipFile:
    """``encode`` in a child process fed through a pipe (see the module's text). AudioError
    with the child's own words if it fails; the file is then untouched (the child writes it
    atomically and removes its temporary file on any error or SIGTERM)."""
    path = Path(path)
    with tempfile.TemporaryFile() as errf:          # a file: the child never blocks on a full pipe
        proc = subprocess.Popen([sys.executable, "-m", "audio_capture.encoder", str(path), fmt, str(rate),
                                 str(bitrate_kbps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
        try:
            try:
                for data in chunks:
                    proc.stdin.write(data)
                proc.stdin.close()
            except BrokenPipeError:
                pass                                # the child failed early: its stderr says why
            out = proc.stdout.read()
            proc.wait(CHILD_TIMEOUT_S)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        errf.seek(0)
        err = errf.read()
    if proc.returncode == EX_IOERR:                 # the disk (full, read-only): the caller frees space
        code, _, msg = err.decode(errors="replace").strip().partition(" ")
        raise OSError(int(code) if code.isdigit() else 5, msg or "I/O error")
    if proc.returncode != 0:
        raise AudioError(f"encoding {path.name} failed: {err.decode(errors='replace').strip()[-500:]}")
    doc = json.loads(out)
    return ClipFile(Path(doc["path"]), doc["format"], doc["size"], doc["sha256"], doc["duration_s"])


def _child(argv: list[str]) -> int:
    path, fmt, rate, bitrate = argv[0], argv[1], int(argv[2]), int(argv[3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # a stop: the temporary file goes
    stdin = sys.stdin.buffer
    try:
        f = encode(iter(lambda: stdin.read(1 << 16), b""), path, fmt, rate, bitrate)
    except OSError as exc:
        sys.stderr.write(f"{exc.errno or 5} {exc.strerror or exc}")
        return EX_IOERR
    doc = asdict(f)
    doc["path"] = str(f.path)
    sys.stdout.write(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
