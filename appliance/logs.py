"""Logging for the daemons and the CLI: to the systemd journal with structured fields when
systemd runs us (``JOURNAL_STREAM`` names our stderr), plain lines on stderr otherwise.

Structured fields go in ``extra``: ``log.info("clip %s", c, extra=fields(clip=c, point=p))``
becomes ``CLIP_ID=`` and ``POINT=`` in the journal, so ``journalctl POINT=till1`` finds
them; on stderr the message says it all."""
from __future__ import annotations

import logging
import os
import sys

FIELD_NAMES = {"point": "POINT", "contact": "CONTACT_ID", "remote": "REMOTE", "clip": "CLIP_ID",
               "device": "DEVICE_ID", "stage": "STAGE"}


def fields(**kw: object) -> dict[str, str]:
    """Journal fields for a log record: ``fields(point="till1")`` -> ``{"POINT": "till1"}``."""
    return {FIELD_NAMES.get(k, k.upper()): str(v) for k, v in kw.items() if v is not None}


def under_journald(env: dict | None = None) -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:ino)."""
    env = os.environ if env is None else env
    stream = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def journal_handler(identifier: str) -> logging.Handler:
    from systemd.journal import JournalHandler
    return JournalHandler(SYSLOG_IDENTIFIER=identifier)


def setup(level: int, identifier: str = "appliance") -> None:
    """One handler on the root logger: the journal under systemd, stderr elsewhere."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if under_journald():
        handler = journal_handler(identifier)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
