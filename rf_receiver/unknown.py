"""Unknown remotes without a journal flood (ARCHITECTURE §11: the radio hears anyone).

A neighbour's transmitter can send thousands of codes a second. Per window (a minute by
default) the first ``max_codes`` unknown codes are journalled at once, each once (a
technician sees a new remote immediately, and learn mode works); later presses of those
codes, and every press of further codes, are only counted, and when the window ends one
``unknown_remotes`` summary says how many presses of how many codes were heard. Pure: time
is an argument."""
from __future__ import annotations

from appliance import vocabulary as v
from appliance.journal import NewEvent
from appliance.timefmt import iso_ms


class UnknownRemoteLimiter:
    def __init__(self, window_ms: int = 60_000, max_codes: int = 10):
        self.window_ms = window_ms
        self.max_codes = max_codes
        self.start: int | None = None
        self.journalled: set[tuple[str, str]] = set()
        self.counted = 0                    # presses not journalled one by one in this window
        self.codes: set[tuple[str, str]] = set()
        self.first = self.last = 0

    def admit(self, ev: NewEvent, now_ms: int) -> list[NewEvent]:
        """An ``unknown_remote`` event: what to journal now (itself, a summary, or nothing)."""
        out = self.tick(now_ms)
        if self.start is None:
            self.start = now_ms
        key = (str(ev.data.get("protocol")), str(ev.data.get("code")))
        if key not in self.journalled and len(self.journalled) < self.max_codes:
            self.journalled.add(key)
            return out + [ev]
        if not self.counted:
            self.first = ev.ts
        self.counted += 1
        self.codes.add(key)
        self.last = ev.ts
        return out

    def tick(self, now_ms: int, force: bool = False) -> list[NewEvent]:
        """At the end of a window (or when the daemon stops, ``force``): the summary of what
        was only counted (if anything)."""
        if self.start is None or (now_ms - self.start < self.window_ms and not force):
            return []
        out = []
        if self.counted:
            out.append(v.UnknownRemotes(presses=self.counted, codes=len(self.codes), window_s=self.window_ms / 1000,
                                        first=iso_ms(self.first), last=iso_ms(self.last))
                       .as_event(self.last, None, "rf", f"rf:unknown:{self.start}:{self.counted}"))
        self.start, self.journalled, self.counted, self.codes = None, set(), 0, set()
        return out
