"""Files that are whole or absent: temp file beside the target + fsync + rename + fsync of
the directory (ARCHITECTURE §2). One implementation for every file the product writes:
replay outputs, clips, the ingest's reassembled clips, status and level files."""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory (a rename is durable once its directory is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` to write by any means (a library that wants a file
    name); on leaving the block it replaces ``path``. An exception leaves ``path`` as it
    was and removes the temporary file. ``durable=False`` skips the fsyncs, for files on a
    RAM-backed file system that no power cut has to survive."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))   # the umask decides, as for any file
    try:
        yield tmp
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_path(path.parent)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", *, durable: bool = True) -> Iterator[IO]:
    """``with atomic_write(p) as f: f.write(...)``: ``p`` is whole or untouched."""
    with atomic_path(path, durable=durable) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f


def write_atomic(path: str | Path, content: str | bytes, *, durable: bool = True) -> None:
    """``content`` (text as UTF-8) at ``path``, whole or not at all — as :func:`atomic_path`
    does, in plain system calls: the audio daemon writes its level file every second."""
    data = content.encode() if isinstance(content, str) else content
    path = os.fspath(path)
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask decides, as for any file
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_path(head or ".")


def write_private(path: str | Path, content: bytes) -> None:
    """Like :func:`write_atomic`, readable by the owner only (mode 0600) before a byte of the
    content is written: private keys."""
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        with open(tmp, "wb") as f:
            f.write(content)
