"""Microphones behind one interface (``base.AudioSource``): ALSA, RTSP/HTTP cameras, files."""
from __future__ import annotations

from appliance.config.schema import Config

from .base import AudioError, AudioSource


def open_source(cfg: Config, wav: str | None = None) -> AudioSource:
    """The configured microphone (or a WAV file played in real time, looped)."""
    a = cfg.audio
    if wav or a.source == "file":
        from .file import FileSource
        return FileSource(wav or a.device, realtime=True, loop=True)
    if a.source == "alsa":
        from .alsa import AlsaSource
        return AlsaSource(a.device, a.rate)
    if a.source == "rtsp":
        from .rtsp import RtspSource
        return RtspSource(a.url, a.rate)
    raise AudioError('[audio] source = "none": no microphone configured')
