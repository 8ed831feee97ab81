"""While a probe holds credentials, no log record of the client libraries carries them: records are scrubbed.

aiokafka logs every request at DEBUG, SASL PLAIN's ``user\\x00user\\x00PASSWORD`` included; an application
that embeds the probes with ``logging.DEBUG`` would write it to its logs. A ``logging.Filter`` cannot stop
that reliably: a logger's filters do not apply to records of its children, and the libraries create child
loggers lazily (redis-py even inside functions, and under names outside its package, ``push_response``).
So the scrubbing happens where every record is born, in the log-record factory
(``logging.setLogRecordFactory``), whatever the logger or handler.

The factory is installed when the first secret is held and restored when the last one is released (unless
another factory was chained on top meanwhile: then it stays, inert). Only records of ``LOGGERS`` (and their
children) are looked at, and only while a secret is held; a record carrying one has every known form of it
(as is, inside a ``str`` or ``bytes`` repr, percent-encoded) replaced by ``***`` in its message, its
arguments and its formatted exception.
"""

from __future__ import annotations

import logging
import threading
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ingest_probe.secret import Secret

#: Loggers (with their children) whose records are scrubbed: the client libraries, redis-py's
#: ``push_response``, and asyncio, which logs what a library's task left unhandled.
LOGGERS = frozenset({"aiokafka", "asyncpg", "redis", "push_response", "asyncio"})
MASK = "***"

_lock = threading.Lock()
_held: Counter[str] = Counter()
#: What records are scrubbed of right now, longest first (a form inside another is replaced after it).
_active: tuple[str, ...] = ()
#: The factory ours wraps; kept after uninstalling, as a record being made in another thread may still use it.
_wrapped: Callable[..., logging.LogRecord] = logging.LogRecord
_installed = False


def forms(value: str) -> set[str]:
    """How ``value`` can appear in a log message: as is, inside a ``str`` or ``bytes`` repr, percent-encoded."""
    found = {value, repr(value)[1:-1], repr(value.encode("utf-8"))[2:-1], urllib.parse.quote(value, safe="")}
    return {f for f in found if f}


class HeldSecrets:
    """The secrets one probe holds; records are scrubbed of them between ``hold()`` and ``release()``.

    Both are idempotent, so a probe holds on every check and releases when its client is closed for good.
    """

    __slots__ = ("_forms", "_holding")

    def __init__(self, secrets: Iterable[Secret | None]) -> None:
        values = {s.reveal() for s in secrets if s is not None and s.reveal()}
        self._forms = tuple(sorted({f for v in values for f in forms(v)}))
        self._holding = False

    def hold(self) -> None:
        if self._holding or not self._forms:
            return
        with _lock:
            self._holding = True
            _held.update(self._forms)
            _refresh()

    def release(self) -> None:
        if not self._holding:
            return
        with _lock:
            self._holding = False
            _held.subtract(self._forms)
            _refresh()


def scrub(text: str) -> str:
    """``text`` with every secret a probe holds right now replaced by ``***``."""
    for secret in _active:
        text = text.replace(secret, MASK)
    return text


def _refresh() -> None:
    """Recompute the active forms and (un)install the factory; called with ``_lock`` held."""
    global _active, _wrapped, _installed
    for form in [f for f, n in _held.items() if n <= 0]:
        del _held[form]
    _active = tuple(sorted(_held, key=len, reverse=True))
    current = logging.getLogRecordFactory()
    if _active and not _installed:
        _wrapped, _installed = current, True
        logging.setLogRecordFactory(_factory)
    elif not _active and _installed and current is _factory:
        # Only when nobody chained a factory on top of ours: theirs would still call ours (inert now).
        logging.setLogRecordFactory(_wrapped)
        _installed = False


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _wrapped(*args, **kwargs)
    secrets = _active
    if secrets and record.name.partition(".")[0] in LOGGERS:
        _scrub_record(record, secrets)
    return record


def _dirty(value: object, secrets: tuple[str, ...]) -> bool:
    try:
        texts = (value,) if isinstance(value, str) else (str(value), repr(value))
    except Exception:  # noqa: BLE001 -- an object whose str() fails cannot be checked: treat it as dirty
        return True
    return any(s in t for t in texts for s in secrets)


def _clean(value: object) -> str:
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 -- see _dirty
        return "<unprintable>"
    return scrub(text)


def _scrub_record(record: logging.LogRecord, secrets: tuple[str, ...]) -> None:
    """Replace every argument (and the message) that carries a secret by its scrubbed text.

    Clean arguments stay as they are (a handler may read them, e.g. an exception). If the record no longer
    formats (``%d`` of a scrubbed number) or still shows a secret, message and arguments become one string.
    """
    try:
        original = record.getMessage()
    except Exception:  # noqa: BLE001 -- a record that does not format: logging would print msg and args
        original = f"{record.msg} {record.args!r}"
    if _dirty(original, secrets) or _dirty(record.args, secrets) or _dirty(record.msg, secrets):
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) if _dirty(a, secrets) else a for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: _clean(v) if _dirty(v, secrets) else v for k, v in record.args.items()}
        if _dirty(record.msg, secrets):
            record.msg = _clean(record.msg)
        try:
            message: str | None = record.getMessage()
        except Exception:  # noqa: BLE001 -- see above
            message = None
        if message is None or _dirty(message, secrets) or _dirty(record.args, secrets):
            record.msg, record.args = scrub(original), ()
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if _dirty(text, secrets):
            # logging.Formatter prints exc_text when there is no exc_info: the scrubbed traceback it is.
            record.exc_info, record.exc_text = None, scrub(text)
    if record.stack_info and _dirty(record.stack_info, secrets):
        record.stack_info = scrub(record.stack_info)
