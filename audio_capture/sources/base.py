"""The interface every audio source implements (STYLE 1): S16_LE mono chunks at the
configured rate, each with the monotonic and wall time of its first sample."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from appliance.errors import HardwareError


@dataclass(slots=True)
class Chunk:
    data: bytes                 # S16_LE mono
    first_mono_ns: int
    first_wall_us: int
    gap_before: bool = False    # samples were lost before this chunk (overrun, reconnect)


class AudioError(HardwareError):
    """The microphone cannot be used (absent, unplugged, unreachable): retry later."""


class AudioSource(ABC):
    name = "audio"
    rate = 16000

    @abstractmethod
    def read(self) -> Chunk | None:
        """The next chunk (blocking about a period), None at the end of a finite source.
        Raises AudioError when the device is lost."""

    def close(self) -> None:  # noqa: B027 - a backend may override it; the default holds nothing
        pass

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
