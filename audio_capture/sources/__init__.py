"""Microphones behind one interface (``base.AudioSource``): ALSA, RTSP/HTTP cameras, files."""
from __future__ import annotations

from appliance.config.schema import Config

from .base import AudioError, AudioSource


CAPTURE_PERIOD_S = 1.0
"""The daemon reads the microphone once a second (an ALSA buffer of ten such periods): an
idle box wakes rarely, and a track waits at most this much longer for its last audio."""


def open_source(cfg: Config, wav: str | None = None) -> AudioSource:
    """The configured microphone (or a WAV file played in real time, looped)."""
    a = cfg.audio
    if wav or a.source == "file":
        from .file import FileSource
        return FileSource(wav or a.device, realtime=True, loop=True, period_s=CAPTURE_PERIOD_S)
    if a.source == "alsa":
        from .alsa import AlsaSource
        return AlsaSource(a.device, a.rate, period_s=CAPTURE_PERIOD_S)
    if a.source == "rtsp":
        from .rtsp import RtspSource
        return RtspSource(a.url, a.rate)
    raise AudioError('[audio] source = "none": no microphone configured')
