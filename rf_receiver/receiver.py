"""The OOK pipeline (STYLE 3): edges -> frame ends -> slicers -> bit rows -> decoders ->
frames. Pure and streaming: feed edges (or runs) as they come.

Cheap per edge. A receiver's noise never stops, so the one thing done for every edge is
one comparison, in C: is the space this edge ends at least ``LONG_US`` long? Every frame
ends in such a space (a sync, a gap, silence) and receiver noise rarely holds one. At each
long space a few subtractions (the space longer than the bit periods before it, five bit
periods alike, or a fixed timing's gap and last mark) turn most noise and every data bit's
space away; only what passes is read back by the slicers.

One frame per end: the slicers' readings of one end compete and the best-fitting names
it (a specific decoder before a generic one; an exact sync before silence; the smaller
timing error), so one transmission never comes out under two protocols.
"""
from __future__ import annotations

from collections import Counter
from itertools import accumulate, compress, islice, repeat
from operator import floordiv, le, sub

from .decoders import registry
from .decoders.base import Failure, FlexTiming, Frame, GapTiming, RcTiming, Row, to_code
from .pulses import merge_runs
from .slicer import (EXACT, GAP_US, LONG_US, MAX_PAIRS, MIN_PARTIAL_BITS, FlexReader, GapReader, Pairs, RcReader, symbol_fit,
                     walk)

KEEP = 2 * (MAX_PAIRS + 8)
"""Edges kept before the newest: the longest frame and what lies before it."""
TRIM = 4096
"""The edge buffer is cut back to KEEP when it grows past this."""
CONTEXT_US = 250_000
"""A frame this close after the last one belongs to the same transmission."""
_MISSING = object()


def _kind(end) -> int:
    return end[0][0]


class Receiver:
    def __init__(self, timings=None, decoders=None, declared=(), ticks_per_us: int = 1):
        """The registry's timings and decoders, plus remotes declared in the config.
        ``ticks_per_us``: the timebase of the edges fed (1 = µs, 1000 = ns)."""
        timings = list(timings if timings is not None else registry.TIMINGS)
        decoders = list(decoders if decoders is not None else registry.DECODERS)
        for d in declared:
            timings.append(d.timing_table)
            decoders.insert(0, d)
        self.decoders = registry.by_timing(decoders)
        used = [t for t in timings if t.name in self.decoders]
        self.rc = [RcReader(t) for t in used if isinstance(t, RcTiming) and not t.inverted]
        self.rc_inv = [RcReader(t) for t in used if isinstance(t, RcTiming) and t.inverted]
        self.flex = [FlexReader(t) for t in used if isinstance(t, FlexTiming)]
        self.gap = [GapReader(t) for t in used if isinstance(t, GapTiming)]
        self.generic = {t.name for t in used if isinstance(t, (RcTiming, GapTiming))}
        self.scale = ticks_per_us
        self.long_us = min([LONG_US] + [t.gap_us for t in used if isinstance(t, FlexTiming)])
        self.long = self.long_us * ticks_per_us
        self.flex_gap = min([t.gap_us for t in used if isinstance(t, FlexTiming)] or [10 ** 12]) * ticks_per_us
        self.ts: list[int] = []      # edge times; the run from ts[i] to ts[i+1] has level lv0 ^ (i & 1)
        self.lv0 = 0
        self.scanned = 0             # runs before this index were looked at
        self.silenced = -1           # the run silence() already ended a frame at
        self.last: Frame | None = None
        self.failures: Counter = Counter()     # (decoder, failure) -> count
        self.rows = 0

    @classmethod
    def from_config(cls, cfg, ticks_per_us: int = 1) -> "Receiver":
        """Every registered protocol plus the remotes declared in ``[rf.decoders]``."""
        from .decoders.declared import from_config
        return cls(declared=from_config(cfg.rf.decoders), ticks_per_us=ticks_per_us)

    # --- input ----------------------------------------------------------------------------

    def feed_edges(self, level: int, ts: list[int]) -> list[Frame]:
        """Edges as a source reads them: their times (ticks) and the level after the first;
        levels alternate from there. Returns the frames they completed."""
        if not ts:
            return []
        buf = self.ts
        if buf:
            if level == self.lv0 ^ ((len(buf) - 1) & 1):
                ts = ts[1:]                  # the same level again: the earlier edge starts the run
                if not ts:
                    return []
        else:
            self.lv0 = level
        buf.extend(ts)
        return self._scan()

    def feed_runs(self, level: int, durations: list[int]) -> list[Frame]:
        """Runs (level of the first, durations in ticks, levels alternating): recordings
        and replays. Each run's end counts as an edge."""
        if not durations:
            return []
        buf = self.ts
        if not buf:
            self.lv0 = level
            buf.append(0)
        elif level != self.lv0 ^ ((len(buf) - 1) & 1):
            # a run of the level just fed again: it goes on (the edge at its end was not one)
            end = buf.pop()
            self.scanned = min(self.scanned, len(buf) - 1)
            if self.silenced >= len(buf) - 1:
                self.silenced = -1
            buf.extend(islice(accumulate(durations, initial=end), 1, None))
            return self._scan()
        buf.extend(islice(accumulate(durations, initial=buf[-1]), 1, None))
        return self._scan()

    def feed(self, level: int, duration: int) -> list[Frame]:
        """One run (level 0/1, µs)."""
        return self.feed_runs(level, [duration * self.scale])

    def silence(self, now: int) -> list[Frame]:
        """No edge until ``now`` (ticks): a space going on that long ends a frame."""
        buf = self.ts
        j = len(buf) - 1
        if j < 8 or j == self.silenced or (self.lv0 ^ (j & 1)) != 0 or now - buf[j] < GAP_US * self.scale:
            return []
        frames: list[Frame] = []
        self._end(j, now, frames)
        self.silenced = j
        return frames

    def restart(self) -> None:
        """Edges were lost: what came before cannot be joined to what comes next."""
        self.ts.clear()
        self.scanned = 0
        self.silenced = -1

    def flush(self) -> list[Frame]:
        """End of a recording: a frame cut by it is not a frame."""
        return []

    def decode_pulses(self, pulses: list[tuple[int, int]], batch: int = 2048) -> list[Frame]:
        """A whole recording ([level, µs] runs), fed in batches as a source would."""
        frames: list[Frame] = []
        runs = merge_runs(pulses)
        for i in range(0, len(runs), batch):
            chunk = runs[i:i + batch]
            frames += self.feed_runs(chunk[0][0], [d * self.scale for _, d in chunk])
        return frames + self.flush()

    # --- frame ends -----------------------------------------------------------------------

    def _scan(self) -> list[Frame]:
        buf = self.ts
        n = len(buf)
        s = self.scanned
        if (s & 1) != self.lv0:          # runs of level 0 (spaces) sit at indices of lv0's parity
            s += 1
        frames: list[Frame] = []
        if s < n - 1:
            ends = list(compress(range(s, n - 1, 2),
                                 map(le, repeat(self.long), map(sub, buf[s + 1:n:2], buf[s:n - 1:2]))))
            if ends:
                inv, flex_gap, silenced = bool(self.rc_inv), self.flex_gap * 20, self.silenced
                for j in ends:
                    if j < 11 or j == silenced:
                        continue
                    # quick tests, in ticks, cheapest first: the space longer than the bit
                    # periods before it (a data bit's space never is), five periods alike
                    # (normal polarity: pairs from runs j-3, j-5, ...; inverted: from j-2,
                    # j-4, ...), or a space as long as a flex timing's gap
                    g = (buf[j + 1] - buf[j]) * 20
                    normal = inverted = False
                    if g >= (buf[j - 1] - buf[j - 7]) * 7:
                        b = buf[j - 3]
                        e = buf[j - 1] - b
                        f = b - buf[j - 5]
                        if 2 * f <= 3 * e and 3 * f >= 2 * e:
                            lo, hi = e * 0.66, e * 1.5
                            normal = (lo <= buf[j - 5] - buf[j - 7] <= hi and lo <= buf[j - 7] - buf[j - 9] <= hi
                                      and lo <= buf[j - 9] - buf[j - 11] <= hi)
                    if inv and g >= (buf[j] - buf[j - 6]) * 7:
                        b = buf[j - 2]
                        e = buf[j] - b
                        f = b - buf[j - 4]
                        if 2 * f <= 3 * e and 3 * f >= 2 * e:
                            lo, hi = e * 0.66, e * 1.5
                            inverted = (lo <= buf[j - 4] - buf[j - 6] <= hi and lo <= buf[j - 6] - buf[j - 8] <= hi
                                        and lo <= buf[j - 8] - buf[j - 10] <= hi)
                    flex = g >= flex_gap and self._flex_could_end(j)
                    if normal or inverted or flex:
                        self._end(j, buf[j + 1], frames, normal, inverted, flex)
        self.scanned = max(n - 1, 0)
        if n > TRIM:
            cut = (n - KEEP) & ~1            # an even cut keeps lv0
            del buf[:cut]
            self.scanned -= cut
            self.silenced -= cut
        return frames

    def _end(self, j: int, end: int, frames: list[Frame], normal: bool = True, inverted: bool = True,
             flex: bool = True) -> None:
        """The space from ts[j] to ``end`` is long and what lies before it passed the quick
        tests: read the frame that ends there, if one does."""
        ts = self.ts
        if j < 11:
            return
        frame = None
        if flex and self.flex:
            frame = self._flex(j, end)
        if frame is None and normal:
            frame = self._rc(j, walk(ts, j, end, self.scale, self.long_us), self.rc, True)
        if frame is None and inverted and self.rc_inv:
            frame = self._rc(j, walk(ts, j, end, self.scale, self.long_us, inverted=True), self.rc_inv, False)
        if frame is not None:
            frames.append(frame)
            if not frame.partial:
                self.last = frame

    def _flex_could_end(self, j: int) -> bool:
        ts, scale = self.ts, self.scale
        mark, gap = (ts[j] - ts[j - 1]) / scale, (ts[j + 1] - ts[j]) / scale
        return any(fx.could_end(mark, gap) for fx in self.flex)

    def _flex(self, j: int, end: int) -> Frame | None:
        ts = self.ts
        first = max(0, j - 2 * (MAX_PAIRS + 6))
        r = list(map(sub, ts[first + 1:j + 1], ts[first:j]))
        r.append(end - ts[j])
        if self.scale != 1:
            r = list(map(floordiv, r, repeat(self.scale)))
        end_us = ts[j] // self.scale
        for fx in self.flex:
            got = fx.read(r)
            if got is not None:
                bits, i = got
                f = self._decode(Row(fx.t.name, bits, float(fx.t.short_us), ts[first + i] // self.scale, end_us))
                if f is not None:
                    return f
        return None

    def _rc(self, j: int, p: Pairs | None, readers: list[RcReader], gap: bool) -> Frame | None:
        """The best reading of a PWM frame ending at the long space at ts[j]: rc-switch (its sync ends it) or
        gap-framed (its last mark is a bit)."""
        if p is None or not p.consistent:
            return None
        fits: dict = {}
        best = partial = None
        ends = [(e, rd) for rd in readers if (e := rd.fit_end(p)) is not None]
        if len(ends) > 1:
            ends.sort(key=_kind)
        for (kind, unit, sync_err), rd in ends:
            if best is not None and best[0][0] < kind and partial is None:
                break                        # a reading of a better kind holds: the rest cannot win
            fit = fits.get(rd.symbols, _MISSING)
            if fit is _MISSING:
                fit = fits[rd.symbols] = symbol_fit(p, *rd.symbols)
            if fit is None:
                continue
            cand = ((kind, fit[1] + 0.1 * sync_err), rd, fit[0], unit, fit[1])
            if rd.known(p, unit):
                if best is None or cand[0] < best[0]:
                    best = cand
            elif kind == EXACT and len(fit[0]) >= MIN_PARTIAL_BITS and (partial is None or cand[0] < partial[0]):
                partial = cand
        start = self.ts[p.first] // self.scale
        end_us = self.ts[j] // self.scale
        if partial is not None and (best is None or best[0][0] != EXACT):
            # the first bits may be missing (noise before them, the receiver's gain settling):
            # a partial frame, only ever part of a press of the code it ends
            _, rd, bits, unit, err = partial
            return Frame(rd.t.name, to_code(bits), len(bits), "", None, start, end_us, unit, True, err)
        last = self.last
        if last is not None and last.end_us < start - CONTEXT_US:
            last = None

        def as_before(f: Frame) -> bool:
            return last is not None and f.code == last.code and f.bits == last.bits
        rc = None
        if best is not None:
            (kind, _), rd, bits, unit, err = best
            rc = self._decode(Row(rd.t.name, bits, unit, start, end_us, err))
            # a generic code is only whole when its sync ends it, or when it repeats the
            # transmission's last frame (the silence after a burst's last frame need not
            # look like the sync; a frame cut short does not repeat one)
            if rc is not None and kind != EXACT and rc.protocol in self.generic and not as_before(rc):
                rc = None
            if rc is not None and rc.protocol not in self.generic:
                return rc                    # a device's decoder accepted it
        gf = None
        if gap and self.gap:
            for gr in self.gap:
                got = gr.read(p)
                if got is not None:
                    gf = self._decode(Row(gr.t.name, got[0], got[1], start, end_us, got[2]))
                    if gf is not None:
                        break
            if gf is not None and p.gap >= GAP_US and not as_before(gf) and not 0.7 <= p.before / p.gap <= 1.43:
                gf = None                    # ended by silence: only between gaps alike, or as a burst's last frame
        if rc is None or gf is None:
            return rc or gf
        # both readings hold (rc is a generic code: a device's decoder would have ended it
        # above): a frame ending in a mark and a long space is either a sync-ended frame or
        # a gap-framed one with one more bit
        if (rc.bits % 4 == 0) != (gf.bits % 4 == 0):
            return rc if rc.bits % 4 == 0 else gf    # remotes send whole nibbles
        for f in (rc, gf):
            if as_before(f):
                return f                     # as the transmission's frames so far
        return rc if best[0][0] == EXACT else gf

    def _decode(self, row: Row) -> Frame | None:
        self.rows += 1
        for d in self.decoders.get(row.timing, ()):
            result = d.decode(row)
            if isinstance(result, Failure):
                self.failures[(d.name, result)] += 1
                continue
            return result
        return None
