"""The office's connections to the ingest's database: SQLite (a file) or PostgreSQL (a
``postgresql://`` URL), one connection per thread (the web server runs each request on a
worker thread), statements written with ``?`` placeholders."""
from __future__ import annotations

import sqlite3
import threading


class Database:
    def __init__(self, target: str):
        self.target = str(target)
        self.pg = self.target.startswith(("postgresql://", "postgres://"))
        self.ph = "%s" if self.pg else "?"
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    def conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            if self.pg:
                import psycopg
                c = psycopg.connect(self.target, autocommit=True)
            else:
                c = sqlite3.connect(self.target, isolation_level=None, check_same_thread=False, timeout=30)
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=FULL")
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    def q(self, sql: str) -> str:
        return sql.replace("?", self.ph) if self.pg else sql

    def execute(self, sql: str, args=()):
        return self.conn().execute(self.q(sql), args)

    def transaction(self):
        return _Transaction(self.conn(), self.pg)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - closing a connection another thread used last
                pass
        self._local = threading.local()


class _Transaction:
    def __init__(self, conn, pg: bool):
        self.conn, self.pg = conn, pg

    def __enter__(self):
        self.conn.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
