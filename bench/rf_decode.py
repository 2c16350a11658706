"""Benchmark: 433 MHz decoding cost, detection quality and press-to-journal latency.

    python bench/rf_decode.py [--presses 200] [--latency-presses 60] [--json]

Prints, each next to a reference measured in the same run:
  - decode CPU time per 1,000 edges over a generated stress set and over pure receiver
    noise, against rpi-rf's decoder (the rc-switch algorithm most Pi projects use) fed the
    same edges, when rpi-rf can be imported here (``pip install --no-deps rpi-rf``; its
    RPi.GPIO import is stubbed, its clock is driven by the edge times). Ours starts from
    what the gpiod source reads from the kernel (48-byte edge events, in the batches its
    reading cadence gives: 20 ms of signal while only noise comes, 5 ms while a press waits
    for its confirming frame) and goes through the parsing, the receiver and the press
    detector; rpi-rf's starts from its edge callback, computing each pulse's duration.
    Reads are paced by time, so the cost per edge falls as the noise gets denser: the
    noise figures are given for the generator's usual noise (~2,400 edges/s) and for a
    dense one (~7,000 edges/s, a receiver at full gain in a noisy shop);
  - detection rate and false presses on the stress set: presses of random EV1527 codes,
    units 150–600 µs, ±0–20 % jitter, receiver noise between presses and spikes inside
    frames; rpi-rf counts a press detected when it reports the code during the press;
  - latency from the edge that completes the confirming (second) frame on the GPIO line to
    the journal commit, through the fake GPIO chip (kernel-style timestamps on a file
    descriptor), the gpiod source, the pipeline, the press detector, the mapping and a
    durable SQLite commit.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from rf_receiver.daemon import SWITCH_INTERVAL_S  # noqa: E402
from rf_receiver.press import PressDetector  # noqa: E402
from rf_receiver.receiver import Receiver  # noqa: E402
from rf_receiver.synthetic import RC, frame, insert_noise, merge, noise  # noqa: E402


def stress_set(n: int, seed: int = 1):
    """(train, [(start_us, end_us, code)]) — presses separated by receiver noise."""
    rnd = random.Random(seed)
    t1 = RC["rc-switch-1"]
    runs: list[tuple[int, int]] = []
    truth = []
    t = 0

    def add(seg):
        nonlocal t
        for lv, d in seg:
            runs.append((lv, d))
            t += d
    for _ in range(n):
        add(noise(rnd.randint(300_000, 900_000), seed=rnd.randrange(1 << 30)))
        add([(0, 15_000)])
        code = rnd.randrange(1 << 24) | 0x100000
        unit = rnd.uniform(150, 600)
        jitter = rnd.uniform(0, 0.2)
        seg = [(1, round(unit)), (0, round(31 * unit))]
        for _ in range(rnd.randint(4, 8)):
            seg += frame(code, 24, t1, unit, rnd, jitter)
        if rnd.random() < 0.3:
            seg = insert_noise(seg, rnd, rnd.randint(1, 3))
        start = t
        add(seg)
        truth.append((start, t, code))
        add([(0, 15_000)])
    add(noise(500_000, seed=seed))
    return merge(runs), truth




def kernel_reads(train) -> list[bytes]:
    """The train as the gpiod source reads it: the kernel's 48-byte edge events, cut into
    reads by its cadence (a read every 20 ms of signal; every 5 ms while a press waits —
    which a first pass with our own decoder tells, as the service does)."""
    from rf_receiver.sources.gpiod import BATCH_S, EVENT, FALLING, HURRY_S, RISING
    noise_batch_us, hurry_batch_us = round(BATCH_S * 1e6), round(HURRY_S * 1e6)
    rx, det = Receiver(), PressDetector(2, 1_500_000)
    t = 0
    edges = []
    for level, dur in train:
        edges.append((t, level, det.pending(t)))
        for f in rx.feed(level, dur):
            det.frame(f)
        t += dur
    # reads: cut at the cadence
    reads, cur, cut, seq = [], bytearray(), 0, 0
    for t_us, level, hurry in edges:
        if t_us >= cut and cur:
            reads.append(bytes(cur))
            cur = bytearray()
        if t_us >= cut:
            cut = t_us + (hurry_batch_us if hurry else noise_batch_us)
        seq += 1
        cur += EVENT.pack(t_us * 1000, RISING if level else FALLING, 27, seq, seq)
    if cur:
        reads.append(bytes(cur))
    return reads


def ours(reads: list[bytes]) -> tuple[list, float]:
    """The gpiod source's parsing, the receiver and the press detector over the reads."""
    from rf_receiver.sources.gpiod import parse_events, to_edges
    t0 = time.process_time()
    rx = Receiver(ticks_per_us=1000)
    det = PressDetector(2, 1_500_000)
    ended = []
    for buf in reads:
        ts, types, _, _ = parse_events(buf)
        e = to_edges(ts, types)
        for f in rx.feed_edges(e.level, e.ts):
            ended += [p for ev, p in det.frame(f) if ev == "ended"]
    ended += [p for ev, p in det.finish() if ev == "ended"]
    return sorted(ended, key=lambda p: p.start_us), time.process_time() - t0


def rpi_rf_decoder():
    """rpi-rf's RFDevice with RPi.GPIO stubbed and its clock driven by us, or None."""
    gpio = types.ModuleType("RPi.GPIO")
    for name in ("BCM", "IN", "OUT", "BOTH", "setmode", "setup", "cleanup", "add_event_detect",
                 "remove_event_detect", "output", "setwarnings"):
        setattr(gpio, name, (lambda *a, **k: None) if name[0].islower() else 0)
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio
    sys.modules.setdefault("RPi", rpi)
    sys.modules.setdefault("RPi.GPIO", gpio)
    try:
        import rpi_rf.rpi_rf as mod
    except ImportError:
        return None
    return mod


def run_rpi_rf(mod, train):
    clock = {"t": 0.0}
    mod.time = types.SimpleNamespace(perf_counter=lambda: clock["t"], time=lambda: clock["t"],
                                     sleep=lambda s: None)
    dev = mod.RFDevice(17)
    dev.rx_enabled = True
    reports = []
    last = None
    t_us = 0
    t0 = time.process_time()
    for _level, dur in train:
        t_us += dur
        clock["t"] = t_us / 1e6
        dev.rx_callback(17)
        if dev.rx_code_timestamp != last:
            last = dev.rx_code_timestamp
            reports.append((t_us, dev.rx_code))
    return reports, time.process_time() - t0


def score_presses(presses, truth):
    found = 0
    false = 0
    used = set()
    for p in presses:
        hit = [i for i, (s, e, c) in enumerate(truth) if s - 1000 <= p.start_us <= e and c == p.code]
        if hit and hit[0] not in used:
            used.add(hit[0])
            found += 1
        elif not hit:
            false += 1
    return found, false


def score_reports(reports, truth):
    found = set()
    false = 0
    for t, code in reports:
        hit = [i for i, (s, e, c) in enumerate(truth) if s <= t <= e + 20_000 and c == code]
        if hit:
            found.add(hit[0])
        else:
            false += 1
    return len(found), false


def latency(n: int) -> tuple[list[float], float]:
    """(latencies ms, mean edges per read) through the fake chip and the gpiod source."""
    from appliance.clock import Clock
    from appliance.config import parse_config
    from appliance.journal import Journal
    from rf_receiver.daemon import RfJournalWriter
    from rf_receiver.service import RfService
    from rf_receiver.sources.gpiod import GpiodSource
    from rf_receiver.sources.gpiod_fake import FakeChip

    remote = 0xC0FFE
    cfg = parse_config(f'[points.till1]\n[remotes.{remote:05x}]\npoint = "till1"\n'
                       'buttons = { 5 = { meaning = "rating", value = 2 } }\n')
    chip = FakeChip()
    source = GpiodSource("/dev/gpiochip0", 27, backend=chip)
    sys.setswitchinterval(SWITCH_INTERVAL_S)      # as the rf daemon does
    reads = 0
    real_read = source.read

    def counted(timeout_s):
        nonlocal reads
        out = real_read(timeout_s)
        reads += bool(out)
        return out
    source.read = counted
    with tempfile.TemporaryDirectory() as d:
        journal = Journal(Path(d) / "journal.db")
        writer = RfJournalWriter(cfg, journal, source, Clock())
        service = RfService(source, PressDetector(2, 1_500_000), writer)
        marks: list[float] = []
        stop = threading.Event()
        rnd = random.Random(3)

        def drive():
            t = time.perf_counter()
            offset = time.monotonic_ns() - round(t * 1e9)
            for _ in range(n):
                unit = rnd.uniform(250, 450)
                runs = noise(300_000, seed=rnd.randrange(1 << 30), min_us=60)
                runs += [(0, 15_000), (1, round(unit)), (0, round(31 * unit))]
                complete_at = None
                for i in range(5):
                    if i == 2:
                        complete_at = len(runs)     # frame 2 is complete when frame 3 begins
                    runs += frame(remote << 4 | 5, 24, RC["rc-switch-1"], unit, rnd, 0.05)
                runs.append((0, 400_000))
                # each edge is stamped when it happens, as the kernel does at the interrupt
                for idx, (level, dur) in enumerate(runs):
                    wait = t - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    chip.drive(27, level, round(t * 1e9) + offset)
                    if idx == complete_at:
                        marks.append(t)
                    t += dur / 1e6
            stop.set()
        th = threading.Thread(target=drive, daemon=True)
        th.start()
        while not stop.is_set() or source.request.wait_edge_events(0):
            service.step(0.05)
        th.join()
        journal.close()
    source.close()
    commits = [c for c, ev in zip(writer.commits, writer.kinds, strict=True) if ev == "rating"]
    return [(c - m) * 1000 for m, c in zip(marks, commits, strict=False)], service.runs / max(reads, 1)


def per_1000(cpu_s: float, edges: int) -> float:
    return cpu_s / edges * 1e6          # ms of CPU per 1,000 edges


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--latency-presses", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res: dict = {"machine": machine()}
    print(f"machine: {res['machine']}")
    train, truth = stress_set(args.presses)
    edges = len(train)
    reads = kernel_reads(train)
    presses, cpu = ours(reads)
    found, false = score_presses(presses, truth)
    nz = noise(120_000_000, seed=7)
    nz_reads = kernel_reads(nz)
    nz_presses, nz_cpu = ours(nz_reads)
    res.update(edges=edges, reads=len(reads), ours_ms_per_1000=per_1000(cpu, edges), ours_found=found,
               ours_false=false, presses=len(truth), noise_edges=len(nz), noise_reads=len(nz_reads),
               noise_ms_per_1000=per_1000(nz_cpu, len(nz)), noise_presses=len(nz_presses),
               noise_frames=len(Receiver().decode_pulses(nz)))
    mod = rpi_rf_decoder()
    print(f"\nstress set: {len(truth)} EV1527 presses (units 150–600 µs, jitter ≤ 20 %, noise between "
          f"and inside), {edges:,} edges in {len(reads):,} reads ({edges / len(reads):.0f} edges a read)")
    print(f"  {'':26} {'ms CPU / 1,000 edges':>22} {'detected':>10} {'false':>7}")
    print(f"  {'appliance (this)':26} {per_1000(cpu, edges):>22.3f} {found:>6}/{len(truth):<3} {false:>7}")
    if mod is not None:
        reports, rcpu = run_rpi_rf(mod, train)
        rfound, rfalse = score_reports(reports, truth)
        nz_reports, nz_rcpu = run_rpi_rf(mod, nz)
        res.update(rpi_rf_ms_per_1000=per_1000(rcpu, edges), rpi_rf_found=rfound, rpi_rf_false=rfalse,
                   rpi_rf_noise_ms_per_1000=per_1000(nz_rcpu, len(nz)), rpi_rf_noise_reports=len(nz_reports),
                   ratio_decode=cpu / rcpu, ratio_noise=nz_cpu / nz_rcpu)
        print(f"  {'rpi-rf 0.9 (rc-switch)':26} {per_1000(rcpu, edges):>22.3f} {rfound:>6}/{len(truth):<3} "
              f"{rfalse:>7}")
        print(f"  ratio (this / rpi-rf): CPU {cpu / rcpu:.2f} (aim ≤ 0.5), detection {found / max(rfound, 1):.2f}")
    else:
        print("  rpi-rf not importable here (pip install --no-deps rpi-rf to compare)")
    print(f"\nreceiver noise alone, 2 min: {len(nz):,} edges in {len(nz_reads):,} reads")
    print(f"  {'appliance (this)':26} {per_1000(nz_cpu, len(nz)):>8.3f} ms CPU / 1,000 edges, "
          f"{res['noise_frames']} frames, {len(nz_presses)} presses")
    if mod is not None:
        print(f"  {'rpi-rf 0.9 (rc-switch)':26} {per_1000(nz_rcpu, len(nz)):>8.3f} ms CPU / 1,000 edges, "
              f"{len(nz_reports)} codes reported")
        print(f"  ratio (this / rpi-rf): CPU {nz_cpu / nz_rcpu:.2f} (aim ≤ 0.2)")
    dense = noise(60_000_000, seed=8, min_us=20, mean_us=120)
    dense_reads = kernel_reads(dense)
    dense_presses, dense_cpu = ours(dense_reads)
    res.update(dense_edges=len(dense), dense_ms_per_1000=per_1000(dense_cpu, len(dense)),
               dense_presses=len(dense_presses))
    print(f"\ndense receiver noise, 1 min: {len(dense):,} edges in {len(dense_reads):,} reads")
    print(f"  {'appliance (this)':26} {per_1000(dense_cpu, len(dense)):>8.3f} ms CPU / 1,000 edges, "
          f"{len(dense_presses)} presses")
    if mod is not None:
        d_reports, d_rcpu = run_rpi_rf(mod, dense)
        res.update(rpi_rf_dense_ms_per_1000=per_1000(d_rcpu, len(dense)), ratio_dense=dense_cpu / d_rcpu)
        print(f"  {'rpi-rf 0.9 (rc-switch)':26} {per_1000(d_rcpu, len(dense)):>8.3f} ms CPU / 1,000 edges, "
              f"{len(d_reports)} codes reported")
        print(f"  ratio (this / rpi-rf): CPU {dense_cpu / d_rcpu:.2f} (aim ≤ 0.2)")
    lat, per_read = latency(args.latency_presses)
    if lat:
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
        res.update(latency_ms_p50=statistics.median(lat), latency_ms_p99=p99, latency_ms_max=lat[-1],
                   latency_edges_per_read=per_read)
        print(f"\nlatency, edge completing the confirming frame -> durable journal commit (fake GPIO chip, "
              f"gpiod source, {per_read:.0f} edges a read), {len(lat)} presses: p50 {statistics.median(lat):.2f} ms, "
              f"p99 {p99:.2f} ms, max {lat[-1]:.2f} ms (aim p99 ≤ 20 ms)")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
