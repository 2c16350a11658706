"""A throw-away PostgreSQL on loopback for the ingest's PostgreSQL tests (Debian package
``postgresql``; run as the ``postgres`` user, as PostgreSQL refuses root)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tests.mqtt_broker import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (tools/install.sh installs it)")
    return found[-1]


class Postgres:
    def __init__(self, workdir: Path):
        # not under pytest's tmp_path: its parents are private to root, and PostgreSQL is not root
        import tempfile
        self.dir = Path(tempfile.mkdtemp(prefix="appliance-pg-")) / "pg"
        self.port = free_port()

    def _as_postgres(self, *cmd: str) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/ingest"

    def start(self) -> "Postgres":
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir.parent, 0o711)
        r = self._as_postgres(_bin("initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        if r.returncode:
            raise RuntimeError(r.stderr)
        r = self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                              "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}", "start")
        if r.returncode:
            raise RuntimeError(r.stderr + (self.dir / "log").read_text())
        r = self._as_postgres(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "ingest")
        if r.returncode:
            raise RuntimeError(r.stderr)
        return self

    def stop(self) -> None:
        self._as_postgres(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop")
        shutil.rmtree(self.dir.parent, ignore_errors=True)
