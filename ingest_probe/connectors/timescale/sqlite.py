"""The SQLite rehearsal backend of the Timescale connector: ``SELECT 1`` on a read-only file, in a daemon thread."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ingest_probe import errors
from ingest_probe.connectors._net import budget, in_daemon_thread, one_line

if TYPE_CHECKING:
    from ingest_probe.connectors.timescale.settings import TimescaleSettings
    from ingest_probe.results import Recorder


async def check(settings: TimescaleSettings, rec: Recorder) -> None:
    """The rehearsal check: the file answers ``SELECT 1``; the result is ``degraded`` (not TimescaleDB)."""
    path = settings.sqlite_path
    if not path:
        raise errors.NotFoundError("no SQLite rehearsal path configured")
    rec.current_phase = "query"
    # A daemon thread, abandoned when the deadline cancels us: a stuck file system must hold neither
    # the run past its deadline nor the process at exit (the interpreter joins anyio's worker threads).
    # The worker finishes (and closes its handle) on its own if the call ever returns.
    key = settings.url_source_key or "TIMESCALEDB_URL"
    open_ms, query_ms, version = await in_daemon_thread(select_one, path, budget(), key)
    rec.current_phase = None
    rec.phases["connect"] = open_ms
    rec.phases["query"] = query_ms
    rec.details.update(sqlite_version=version, read_only=True)  # the path is in the manifest's url
    rec.degrade(
        "rehearsal",
        f"SQLite rehearsal backend, not TimescaleDB: {path} answered SELECT 1;"
        " point TIMESCALEDB_URL at PostgreSQL/TimescaleDB for production",
    )


def select_one(path: str, timeout: float, key: str) -> tuple[float, float, str]:
    """Worker thread: open ``path`` read-only (never creates it), ``SELECT 1``; returns timings in ms.

    Only a regular file is opened: SQLite would block forever opening a FIFO and read a device.
    """
    import sqlite3

    absolute = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        hint = (
            f" ({path!r} is relative to the working directory {os.getcwd()}: absolute paths need"
            " sqlite:////abs/path)"
            if not os.path.isabs(path)
            else ""
        )
        raise errors.NotFoundError(
            f"SQLite rehearsal file {absolute} does not exist (not created by the probe): check the path in"
            f" {key}{hint}"
        ) from exc
    except OSError as exc:
        raise errors.QueryError(f"cannot stat SQLite rehearsal file {absolute}: {exc.strerror}") from exc
    if not stat.S_ISREG(mode):
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise errors.ProtocolError(
            f"SQLite rehearsal path {absolute} is {what}, not an SQLite database file: check the path in {key}"
        )
    started = time.monotonic()
    uri = Path(absolute).as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise errors.QueryError(f"cannot open SQLite file {absolute} read-only: {one_line(exc)}") from exc
    try:
        opened = time.monotonic()
        try:
            conn.execute("SELECT 1").fetchone()
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it SQLite?
        except sqlite3.DatabaseError as exc:
            if "not a database" in str(exc):
                raise errors.ProtocolError(f"{absolute} is not an SQLite database: {one_line(exc)}") from exc
            raise errors.QueryError(f"SELECT 1 on SQLite file {absolute} failed: {one_line(exc)}") from exc
        done = time.monotonic()
    finally:
        conn.close()
    return (opened - started) * 1000.0, (done - opened) * 1000.0, sqlite3.sqlite_version
