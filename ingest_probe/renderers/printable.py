"""Control characters made visible: server-controlled text never drives the terminal (human output, JSON).

A server decides much of what a report says: error messages, versions, topic names, config keys and values,
broker hosts. Written raw, an ESC sequence clears the operator's screen or retitles the window, a C1 byte
does the same on terminals that honour 8-bit controls, a bidi override reverses what a line appears to say,
and a newline breaks a Markdown table or a one-line log. Human-facing output goes through ``printable``
(each such character shown as an escape, e.g. ``\\x1b``); JSON keeps every value exact and escapes them as
``\\uXXXX``, which decodes to the same string.
"""

from __future__ import annotations

import re

#: C0 controls, DEL, C1 controls, the bidi marks/embeddings/overrides/isolates and the Unicode line and
#: paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What ``json.dumps(ensure_ascii=False)`` leaves raw: everything above but C0 (which it escapes itself).
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(char: str) -> str:
    code = ord(char)
    return _SHORT.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every control character (except those in ``keep``) shown as an escape: ``\\x1b``."""
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def json_text(document: str) -> str:
    """A ``json.dumps(..., ensure_ascii=False)`` result with DEL, C1 and bidi controls as ``\\uXXXX`` too.

    These characters can only stand inside JSON strings there, where the escape means the same character:
    ``json.loads`` gives back exactly the same values.
    """
    return _JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
