"""Who may look and listen: local accounts (argon2id password hashes), their roles and
scopes, sessions with a CSRF token each, login throttling, and the audit log of every clip
played, downloaded or deleted (customer audio is personal data).

Roles: ``admin`` sees and hears everything; ``manager`` sees the stores of their groups
(a group covers the groups under it: ``north`` covers ``north/riga``), listens to and
reviews their contacts; ``viewer`` sees the figures and lists of their groups, no audio."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..ingest import in_group, place_problem
from .db import Database

ROLES = ("admin", "manager", "viewer")
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}\Z")
MIN_PASSWORD = 10

SESSION_IDLE_S = 2 * 3600
SESSION_MAX_S = 12 * 3600
FREE_FAILURES = {"user": 5, "ip": 20}
"""Wrong passwords allowed before each further try waits: 1 s, 2 s, 4 s … up to LOCK_MAX_S."""
LOCK_MAX_S = 900

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS office_users(
        name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL, groups TEXT NOT NULL,
        created BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS office_sessions(
        token TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL, created BIGINT NOT NULL,
        seen BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS office_throttle(
        key TEXT PRIMARY KEY, failures INTEGER NOT NULL, last BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS office_audit(
        at BIGINT NOT NULL, name TEXT NOT NULL, action TEXT NOT NULL, device TEXT, clip TEXT, detail TEXT,
        ip TEXT)""",
    "CREATE INDEX IF NOT EXISTS office_audit_at ON office_audit(at)",
    """CREATE TABLE IF NOT EXISTS office_reviews(
        device TEXT NOT NULL, contact TEXT NOT NULL, name TEXT NOT NULL, at BIGINT NOT NULL, comment TEXT NOT NULL,
        PRIMARY KEY(device, contact))""",
]


class AccountError(ValueError):
    """A bad name, role, group or password: the message says what to give."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    groups: tuple[str, ...]

    def sees(self, group: str | None) -> bool:
        """Whether a device in ``group`` is in this user's scope."""
        return self.role == "admin" or any(in_group(group, g) for g in self.groups)

    @property
    def listens(self) -> bool:
        return self.role in ("admin", "manager")

    @property
    def reviews(self) -> bool:
        return self.role in ("admin", "manager")


def _token_key(token: str) -> str:
    """Sessions are stored by the hash of their token: a leaked database opens no session."""
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, db: Database, clock=time.time, hasher: PasswordHasher | None = None):
        self.db = db
        self.clock = clock
        self.hasher = hasher or PasswordHasher()

    @cached_property
    def _dummy(self) -> str:
        """A hash to check an unknown name's password against (made at the first login, not
        by every command that opens the accounts)."""
        return self.hasher.hash(secrets.token_hex(16))

    def create(self) -> None:
        for stmt in SCHEMA:
            self.db.execute(stmt)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- accounts ---------------------------------------------------------------------------

    @staticmethod
    def check(name: str, role: str | None = None, groups: list[str] | None = None,
              password: str | None = None) -> None:
        if not NAME.match(name):
            raise AccountError(f"user name {name!r}: 1-64 letters, digits, _ . @ -")
        if role is not None and role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        for g in groups or []:
            problem = place_problem("group", g)
            if problem:
                raise AccountError(f"group {g!r}: {problem}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise AccountError(f"password: at least {MIN_PASSWORD} characters")

    def add(self, name: str, password: str, role: str, groups: list[str]) -> None:
        self.check(name, role, groups, password)
        if role != "admin" and not groups:
            raise AccountError(f"a {role} sees only their groups: give at least one --group")
        if self.db.execute("SELECT 1 FROM office_users WHERE name = ?", (name,)).fetchone():
            raise AccountError(f"user {name!r} exists (fleetctl users set / passwd change it)")
        self.db.execute("INSERT INTO office_users VALUES (?,?,?,?,?)",
                        (name, self.hasher.hash(password), role, "\n".join(groups), self._now_ms()))

    def set(self, name: str, role: str | None = None, groups: list[str] | None = None,
            password: str | None = None) -> None:
        self.check(name, role, groups, password)
        user = self.get(name)
        if user is None:
            raise AccountError(f"no user {name!r}")
        new_role = role or user.role
        new_groups = groups if groups is not None else list(user.groups)
        if new_role != "admin" and not new_groups:
            raise AccountError(f"a {new_role} sees only their groups: give at least one --group")
        with self.db.transaction() as c:
            c.execute(self.db.q("UPDATE office_users SET role = ?, groups = ? WHERE name = ?"),
                      (new_role, "\n".join(new_groups), name))
            if password is not None:
                c.execute(self.db.q("UPDATE office_users SET hash = ? WHERE name = ?"),
                          (self.hasher.hash(password), name))
            c.execute(self.db.q("DELETE FROM office_sessions WHERE name = ?"), (name,))   # log out everywhere

    def remove(self, name: str) -> bool:
        with self.db.transaction() as c:
            c.execute(self.db.q("DELETE FROM office_sessions WHERE name = ?"), (name,))
            return c.execute(self.db.q("DELETE FROM office_users WHERE name = ?"), (name,)).rowcount > 0

    def get(self, name: str) -> User | None:
        row = self.db.execute("SELECT name, role, groups FROM office_users WHERE name = ?", (name,)).fetchone()
        return User(row[0], row[1], tuple(g for g in row[2].split("\n") if g)) if row else None

    def list(self) -> list[User]:
        return [User(n, r, tuple(g for g in gs.split("\n") if g))
                for n, r, gs in self.db.execute("SELECT name, role, groups FROM office_users ORDER BY name")]

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password is theirs. An unknown name costs a hash too, so the
        answer's time does not tell which names exist."""
        row = self.db.execute("SELECT hash FROM office_users WHERE name = ?", (name,)).fetchone() \
            if NAME.match(name) else None
        try:
            self.hasher.verify(row[0] if row else self._dummy, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if self.hasher.check_needs_rehash(row[0]):
            self.db.execute("UPDATE office_users SET hash = ? WHERE name = ?", (self.hasher.hash(password), name))
        return self.get(name)

    # --- sessions -------------------------------------------------------------------------

    def open_session(self, user: User) -> tuple[str, str]:
        """A new session: (the cookie's token, its CSRF token)."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._now_ms()
        self.db.execute("DELETE FROM office_sessions WHERE seen < ? OR created < ?",
                        (now - SESSION_IDLE_S * 1000, now - SESSION_MAX_S * 1000))
        self.db.execute("INSERT INTO office_sessions VALUES (?,?,?,?,?)", (_token_key(token), user.name, csrf, now, now))
        return token, csrf

    def session(self, token: str | None) -> tuple[User, str] | None:
        """The session's user and CSRF token, or None (unknown, idle too long, too old)."""
        if not token or len(token) > 100:
            return None
        key, now = _token_key(token), self._now_ms()
        row = self.db.execute("SELECT name, csrf, created, seen FROM office_sessions WHERE token = ?", (key,)).fetchone()
        if row is None:
            return None
        name, csrf, created, seen = row
        if now - seen > SESSION_IDLE_S * 1000 or now - created > SESSION_MAX_S * 1000:
            self.db.execute("DELETE FROM office_sessions WHERE token = ?", (key,))
            return None
        user = self.get(name)
        if user is None:
            return None
        if now - seen > 60_000:
            self.db.execute("UPDATE office_sessions SET seen = ? WHERE token = ?", (now, key))
        return user, csrf

    def close_session(self, token: str | None) -> None:
        if token:
            self.db.execute("DELETE FROM office_sessions WHERE token = ?", (_token_key(token),))

    @staticmethod
    def csrf_ok(expected: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())

    # --- throttling ---------------------------------------------------------------------------

    def wait_s(self, keys: dict[str, str]) -> float:
        """Seconds before another login may be tried for these keys (``{"user": name,
        "ip": address}``): 0 when it may now."""
        now, wait = self._now_ms(), 0.0
        for kind, value in keys.items():
            row = self.db.execute("SELECT failures, last FROM office_throttle WHERE key = ?",
                                  (f"{kind}:{value}",)).fetchone()
            if row and row[0] >= FREE_FAILURES[kind]:
                lock_ms = min(2 ** (row[0] - FREE_FAILURES[kind]), LOCK_MAX_S) * 1000
                wait = max(wait, (row[1] + lock_ms - now) / 1000)
        return max(0.0, wait)

    def failed(self, keys: dict[str, str]) -> None:
        now = self._now_ms()
        for kind, value in keys.items():
            self.db.execute("INSERT INTO office_throttle VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE"
                            " SET failures = office_throttle.failures + 1, last = excluded.last",
                            (f"{kind}:{value}", now))

    def succeeded(self, keys: dict[str, str]) -> None:
        self.db.execute("DELETE FROM office_throttle WHERE key = ?", (f"user:{keys['user']}",))

    # --- audit ------------------------------------------------------------------------------

    def audit(self, name: str, action: str, device: str | None = None, clip: str | None = None,
              detail: str | None = None, ip: str | None = None) -> None:
        self.db.execute("INSERT INTO office_audit VALUES (?,?,?,?,?,?,?)",
                        (self._now_ms(), name, action, device, clip, detail, ip))

    def audit_log(self, since_ms: int | None = None, name: str | None = None, limit: int = 1000) -> list[dict]:
        sql, args = "SELECT at, name, action, device, clip, detail, ip FROM office_audit WHERE 1 = 1", []
        if since_ms is not None:
            sql += " AND at >= ?"
            args.append(since_ms)
        if name is not None:
            sql += " AND name = ?"
            args.append(name)
        rows = self.db.execute(sql + " ORDER BY at DESC LIMIT ?", (*args, limit)).fetchall()
        return [dict(zip(("at", "user", "action", "device", "clip", "detail", "ip"), r, strict=True)) for r in rows]
