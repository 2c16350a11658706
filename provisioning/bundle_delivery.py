"""The fleet's ``update`` command, box side (in the sync daemon, its own unprivileged user):
the release bundle arrives over MQTT in chunks (``update/<sha256>/<n>``, like clips going the
other way) or is fetched from a URL; once whole, its SHA-256 and signature are checked and a
request is left for ``appliance-update.service`` (root), whose outcome (``update.json``) is
the command's result.

Every chunk is a file of its own, written whole (temp file + fsync + rename), so a restart
or a power cut keeps what arrived and a command sent again sends only what is missing
(chunks are named by the bundle's SHA-256, not by the command). The job itself
(``job.json``) outlives a restart of the sync daemon — the update restarts it on purpose."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from appliance.config.schema import Config
from appliance.files import atomic_path, write_atomic

from .update import MAX_BUNDLE_BYTES, TERMINAL, UpdateError, load_public_keys, read_state, verify_bundle
from .update_service import REQUEST_FILE, STATE_FILE, updates_dir

log = logging.getLogger(__name__)

TOPIC = "update"                    # update/<sha256>/<n>, down
JOB_FILE = "job.json"
MAX_CHUNK_BYTES = 1024 * 1024
MAX_CHUNKS = 4096
CHUNK_IDLE_S = 120.0
"""A delivery over MQTT that hears no chunk for this long (connected) ends with what is missing."""
STRAY_MAX_AGE_S = 86400.0
"""Chunks of a bundle no job wants any more are kept this long (a command sent again resumes)."""
MAX_STRAY_BUNDLES = 2
FETCH_TIMEOUT_S = 60.0
_SHA = re.compile(r"^[0-9a-f]{64}\Z")


class DeliveryError(Exception):
    """An update command that cannot be taken as given (the message says why)."""


def parse_args(args: dict) -> dict:
    """The ``update`` command's arguments: ``sha256`` and ``size`` of the bundle, then either
    ``chunks`` and ``chunk_size`` (MQTT) or ``url`` (http/https); ``version`` informative."""
    sha, size = args.get("sha256"), args.get("size")
    if not (isinstance(sha, str) and _SHA.match(sha)):
        raise DeliveryError("args.sha256: the bundle's SHA-256 (64 lowercase hex digits)")
    if not (isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_BUNDLE_BYTES):
        raise DeliveryError(f"args.size: the bundle's size in bytes (1 to {MAX_BUNDLE_BYTES})")
    version = args.get("version", "")
    if not (isinstance(version, str) and len(version) <= 64):
        raise DeliveryError("args.version: at most 64 characters")
    job = {"sha256": sha, "size": size, "version": version}
    url = args.get("url")
    if url is not None:
        if not isinstance(url, str) or len(url) > 2000 or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise DeliveryError("args.url: an http:// or https:// URL")
        return {**job, "url": url}
    chunks, chunk_size = args.get("chunks"), args.get("chunk_size")
    if not (isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and 0 < chunk_size <= MAX_CHUNK_BYTES):
        raise DeliveryError(f"args.chunk_size: 1 to {MAX_CHUNK_BYTES} bytes (or give args.url)")
    if chunks != -(-size // chunk_size) or chunks > MAX_CHUNKS:
        raise DeliveryError("args.chunks: must be the size divided by the chunk size, rounded up")
    return {**job, "chunks": chunks, "chunk_size": chunk_size}


class Delivery:
    """One update at a time. ``receive_chunk`` runs on paho's thread; ``start`` and ``step``
    on the sync daemon's; a URL is fetched on a thread of its own."""

    def __init__(self, cfg: Config, clock_ms=lambda: int(time.time() * 1000)):
        self.cfg = cfg
        self.dir = updates_dir(cfg)
        self.clock_ms = clock_ms
        self.lock = threading.Lock()
        self.job: dict | None = self._load()
        self.last_chunk = time.monotonic()
        self.fetch: threading.Thread | None = None
        self.fetch_error = ""

    def _load(self) -> dict | None:
        try:
            return json.loads((self.dir / JOB_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / JOB_FILE, json.dumps(self.job).encode())

    def bundle_path(self, sha: str) -> Path:
        return self.dir / f"{sha}.bundle"

    # --- the command ----------------------------------------------------------------------

    def start(self, cmd_id: str, args: dict, expires: int) -> None:
        job = parse_args(args)
        if self.job is not None and self.job["id"] != cmd_id:
            raise DeliveryError(f"update {self.job['id']} is still in progress ({self.job['phase']}); "
                                f"one at a time")
        if not load_public_keys(Path(self.cfg.update.keys_dir)):
            raise DeliveryError(f"no release key in {self.cfg.update.keys_dir}: this box takes no update")
        self.dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.dir).free
        if free < 3 * job["size"]:
            raise DeliveryError(f"not enough free space: {free >> 20} MB, the update needs {3 * job['size'] >> 20} MB")
        with self.lock:
            self.job = {**job, "id": cmd_id, "expires": expires, "phase": "receiving"}
            self._save()
            self.last_chunk = time.monotonic()
        if "url" in job:
            self.fetch_error = ""
            self.fetch = threading.Thread(target=self._fetch, args=(dict(self.job),), name="update-fetch",
                                          daemon=True)
            self.fetch.start()
        log.info("update %s: receiving %s (%d bytes) %s", cmd_id, job["version"] or job["sha256"][:12], job["size"],
                 "from " + urllib.parse.urlsplit(job["url"]).netloc if "url" in job else f"in {job['chunks']} chunks")

    # --- paho's thread --------------------------------------------------------------------

    def receive_chunk(self, sha: str, part: str, payload: bytes) -> None:
        if not _SHA.match(sha) or not part.isdigit() or len(part) > 5 or int(part) >= MAX_CHUNKS:
            raise ValueError("not an update chunk topic")
        if len(payload) > MAX_CHUNK_BYTES:
            raise ValueError("update chunk larger than 1 MB")
        n = int(part)
        with self.lock:
            job = self.job
            if job is not None and job.get("sha256") == sha and "chunks" in job:
                if job["phase"] != "receiving" or self.bundle_path(sha).exists():
                    return                      # whole already: a resend
                last = n == job["chunks"] - 1
                want = job["size"] - n * job["chunk_size"] if last else job["chunk_size"]
                if n >= job["chunks"] or len(payload) != want:
                    raise ValueError(f"update chunk {n}: not the size the command announced")
            elif not (self.dir / sha).is_dir() and len([d for d in self.dir.glob("*") if d.is_dir()]) >= \
                    MAX_STRAY_BUNDLES:
                raise ValueError("update chunks of a bundle no command announced")
            self.last_chunk = time.monotonic()
        d = self.dir / sha
        d.mkdir(parents=True, exist_ok=True)
        if not (d / str(n)).exists():
            write_atomic(d / str(n), payload)

    # --- the sync daemon's thread ---------------------------------------------------------

    def step(self, connected: bool) -> tuple[str, str, dict, str] | None:
        """(command id, status, result, error) when the update ended, else None."""
        with self.lock:
            job = dict(self.job) if self.job else None
        if job is None:
            return None
        if job["phase"] == "receiving":
            return self._receiving(job, connected)
        st = self.state()
        if st.get("id") == job["id"] and st.get("phase") in TERMINAL:
            ok = st["phase"] == "committed"
            result = {k: st[k] for k in ("phase", "version", "previous") if st.get(k)}
            return self._end(job, "ok" if ok else "error", result, "" if ok else st.get("error", st["phase"]))
        return None

    def _receiving(self, job: dict, connected: bool) -> tuple | None:
        bundle = self.bundle_path(job["sha256"])
        if "url" in job:
            if self.fetch is None or not self.fetch.is_alive():
                if self.fetch is None and not bundle.exists():      # restarted while fetching: again
                    self.fetch = threading.Thread(target=self._fetch, args=(job,), name="update-fetch", daemon=True)
                    self.fetch.start()
                    return None
                if self.fetch_error:
                    return self._end(job, "error", {}, self.fetch_error)
        else:
            d = self.dir / job["sha256"]
            have = sum(1 for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else 0
            if have < job["chunks"] and not bundle.exists():
                if job["expires"] and self.clock_ms() > job["expires"]:
                    return self._end(job, "expired", {"chunks": have},
                                     f"the bundle was incomplete ({have} of {job['chunks']} chunks) when the command "
                                     f"expired; send it again (the chunks received are kept)")
                if connected and time.monotonic() - self.last_chunk > CHUNK_IDLE_S:
                    return self._end(job, "error", {"chunks": have},
                                     f"incomplete: {have} of {job['chunks']} chunks arrived, then none for "
                                     f"{CHUNK_IDLE_S:.0f} s; send the update again (the chunks received are kept)")
                return None
            if not bundle.exists():
                why = self._assemble(d, job, bundle)
                if why:
                    return self._end(job, "error", {}, why)
        if not bundle.exists():
            return None
        return self._hand_over(job, bundle)

    def _assemble(self, d: Path, job: dict, bundle: Path) -> str:
        """The chunks in order into the bundle, whole or not at all; why not, or ""."""
        try:
            with atomic_path(bundle) as tmp:
                h = hashlib.sha256()
                with open(tmp, "wb") as out:
                    for n in range(job["chunks"]):
                        data = (d / str(n)).read_bytes()
                        h.update(data)
                        out.write(data)
                if h.hexdigest() != job["sha256"]:
                    raise DeliveryError(f"the chunks do not make the bundle the command named (SHA-256 "
                                        f"{h.hexdigest()[:12]}…)")
        except DeliveryError as exc:
            return str(exc)
        finally:
            shutil.rmtree(d, ignore_errors=True)     # whole, or not the announced bundle: done with
        return ""

    def _hand_over(self, job: dict, bundle: Path) -> tuple | None:
        try:
            m = verify_bundle(bundle, load_public_keys(Path(self.cfg.update.keys_dir)), None)
        except UpdateError as exc:
            bundle.unlink(missing_ok=True)
            return self._end(job, "error", {"phase": "refused"}, str(exc))
        write_atomic(self.dir / REQUEST_FILE, json.dumps({"id": job["id"], "bundle": bundle.name,
                                                          "expires": job["expires"]}).encode())
        with self.lock:
            self.job = {**job, "phase": "requested", "version": m.version}
            self._save()
        log.info("update %s: bundle of %s whole and signed; handed to appliance-update.service", job["id"], m.version)
        return None

    def _fetch(self, job: dict) -> None:
        try:
            with atomic_path(self.bundle_path(job["sha256"])) as tmp:
                h, got = hashlib.sha256(), 0
                req = urllib.request.Request(job["url"], headers={"User-Agent": "contact-analyzer-update"})
                with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as r, open(tmp, "wb") as out:
                    while True:
                        data = r.read(1 << 16)
                        if not data:
                            break
                        got += len(data)
                        if got > job["size"]:
                            raise DeliveryError(f"the URL sent more than the {job['size']} bytes announced")
                        h.update(data)
                        out.write(data)
                if got != job["size"] or h.hexdigest() != job["sha256"]:
                    raise DeliveryError(f"the URL's file is not the bundle the command named ({got} bytes, SHA-256 "
                                        f"{h.hexdigest()[:12]}…)")
        except (OSError, ValueError, DeliveryError) as exc:     # urllib's errors are OSErrors
            self.fetch_error = f"download failed: {exc}"[:500]
            log.warning("update %s: %s", job["id"], self.fetch_error)

    def abandon(self, why: str) -> tuple | None:
        """End the update under way with an error (something unforeseen went wrong with it)."""
        with self.lock:
            job = dict(self.job) if self.job else None
        return self._end(job, "error", {}, why) if job else None

    def _end(self, job: dict, status: str, result: dict, error: str) -> tuple:
        with self.lock:
            self.job = None
            (self.dir / JOB_FILE).unlink(missing_ok=True)
        if status == "ok" or result.get("phase") == "refused":
            shutil.rmtree(self.dir / job["sha256"], ignore_errors=True)
        self.fetch, self.fetch_error = None, ""
        log.info("update %s: %s %s", job["id"], status, error)
        return job["id"], status, result, error

    # --- what the fleet sees --------------------------------------------------------------

    def state(self) -> dict:
        return read_state(self.dir / STATE_FILE)

    def summary(self) -> dict:
        """For ``info``: the last update's phase (committed, rolled back, waiting …) and, while
        one is being received, its progress."""
        st = {k: v for k, v in self.state().items() if k in ("id", "phase", "version", "previous", "error", "time")}
        with self.lock:
            job = self.job
        if job is not None and job["phase"] == "receiving":
            st = {"id": job["id"], "phase": "receiving", "version": job.get("version", "")}
            if "chunks" in job:
                d = self.dir / job["sha256"]
                st["chunks"] = [sum(1 for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else 0, job["chunks"]]
        return st

    def tidy(self) -> None:
        """Chunks of bundles no job wants, and bundles a power cut left half-written, older than a
        day: removed."""
        with self.lock:
            keep = self.job["sha256"] if self.job else None
        now = time.time()
        for d in self.dir.glob("*") if self.dir.is_dir() else []:
            if d.is_dir() and d.name != keep and now - d.stat().st_mtime > STRAY_MAX_AGE_S:
                shutil.rmtree(d, ignore_errors=True)
        for f in self.dir.glob(".*.tmp") if self.dir.is_dir() else []:   # a bundle cut short by a power cut
            if now - f.stat().st_mtime > STRAY_MAX_AGE_S:
                f.unlink(missing_ok=True)
