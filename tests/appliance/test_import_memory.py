"""``journal import`` streams: its peak memory (the child's own peak RSS) does not grow with
the size of the file, and a big file is still all-or-nothing."""
from __future__ import annotations

import os
import sys

from appliance.journal import Journal
from tests.conftest import ROOT, make_config

T0 = 1_795_165_200_000


def events_file(path, n: int, bad_at: int | None = None):
    from appliance.timefmt import iso_ms
    with open(path, "w") as f:
        for i in range(n):
            if i == bad_at:
                f.write('{"type": "sale"}\n')
            elif i % 3 == 0:
                f.write(f'{{"ts": "{iso_ms(T0 + i * 1000)}", "type": "sale", "point": "till1", "receipt": "R{i}", '
                        f'"amount": 12.5}}\n')
            else:
                f.write(f'{{"ts": "{iso_ms(T0 + i * 1000)}", "type": "presence", "point": "till2", '
                        f'"state": "{"arrived" if i % 3 == 1 else "left"}"}}\n')
    return path


def peak_rss_kb(cmd: list[str]) -> tuple[int, int, str]:
    """Run a command as a child; its exit code, its peak RSS (kB) and its output."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.chdir(ROOT)
        os.execv(sys.executable, [sys.executable, *cmd])
    os.close(w)
    chunks = []
    while data := os.read(r, 65536):
        chunks.append(data)
    os.close(r)
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss, b"".join(chunks).decode()


def config_in(d):
    d.mkdir(parents=True, exist_ok=True)
    return make_config(d)


def test_import_memory_does_not_grow_with_the_file(tmp_path):
    small = events_file(tmp_path / "small.jsonl", 20_000)
    big = events_file(tmp_path / "big.jsonl", 300_000)               # 15x the events, ~25 MB
    rc1, rss_small, out1 = peak_rss_kb(["-m", "appliance.cli.main", "--config",
                                        str(config_in(tmp_path / "a")), "journal", "import", str(small)])
    rc2, rss_big, out2 = peak_rss_kb(["-m", "appliance.cli.main", "--config",
                                      str(config_in(tmp_path / "b")), "journal", "import", str(big)])
    assert rc1 == 0 and "imported 20000 event(s)" in out1, out1
    assert rc2 == 0 and "imported 300000 event(s)" in out2, out2
    assert rss_big < rss_small + 12_000, (rss_small, rss_big)           # kB: flat, not 15x


def test_a_big_file_with_one_bad_line_imports_nothing(tmp_path):
    bad = events_file(tmp_path / "bad.jsonl", 50_000, bad_at=49_000)
    cfg = config_in(tmp_path / "c")
    rc, _, out = peak_rss_kb(["-m", "appliance.cli.main", "--config", str(cfg), "journal", "import", str(bad)])
    assert rc == 2 and "bad.jsonl:49001: " in out and "nothing imported" in out
    assert not (tmp_path / "c" / "state" / "journal.db").exists() or Journal.in_dir(tmp_path / "c" / "state").count() == 0
