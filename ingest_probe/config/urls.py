"""URL, authority and host parsing shared by every kind; a ``UrlError`` never quotes its input (it may hold
secrets)."""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote


class UrlError(ValueError):
    """The reason a connection string is unusable. Never contains any part of the string."""


class Authority(NamedTuple):
    """``user:password@host:port`` split with ``rpartition('@')`` so a raw ``@`` in a password stays in it.

    The parts of a URL are named tuples (cheap to define on every start-up path); ``repr`` hides the password.
    """

    user: str | None
    password: str | None
    host: str | None
    port: int | None

    def __repr__(self) -> str:
        return f"Authority(user={self.user!r}, password=***, host={self.host!r}, port={self.port!r})"


#: Query parameters whose value is a secret: an unescaped ``&`` in one starts what looks like another parameter.
SECRET_PARAMS = frozenset({"password", "sslpassword"})


class ParsedUrl(NamedTuple):
    """A URL's scheme, authority, path (percent-decoded, without the leading ``/``) and query (not shown)."""

    scheme: str
    authority: Authority
    path: str
    query: dict[str, str]
    #: Query names that come after a secret-bearing parameter (``SECRET_PARAMS``), each with the nearest such
    #: parameter before it: ``?password=ab&cd=ef`` may be the password ``ab&cd=ef``.
    after_secret: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"ParsedUrl(scheme={self.scheme!r}, authority={self.authority!r}, path={self.path!r})"


def unsupported(query: dict[str, str], honoured: tuple[str, ...], known: frozenset[str],
                after_secret: tuple[tuple[str, str], ...] = ()) -> tuple[str, ...]:
    """Descriptions of query parameters that are dropped, for a warning; never a value.

    Names are not secrets, so an unknown one is named (``?timout=5``: "did you mean 'timeout'?"), except
    after a secret-bearing parameter: ``?password=ab&cd=ef`` is, as often as not, the password ``ab&cd=ef``
    with its ``&`` left unescaped, and ``cd`` a piece of it. Such a name is described, not quoted, and the
    warning says how to write the value. A real parameter name of the client library (``known``, an
    allow-list) is always named.
    """
    out = []
    secret_before = dict(after_secret)
    for name in query:
        if name in honoured:
            continue
        if name in known:
            out.append(f"query parameter {name!r} is not supported and is ignored")
            continue
        import difflib  # only for a misspelt parameter

        guess = difflib.get_close_matches(name.lower(), honoured, n=1, cutoff=0.75)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        if name in secret_before:
            out.append(f"an unrecognised query parameter after {secret_before[name]!r} is ignored (name not shown:"
                       f" it may be part of the {secret_before[name]} value, whose '&' must be written %26{hint})")
            continue
        shown = name if len(name) <= 40 else name[:39] + "…"
        out.append(f"unknown query parameter {shown!r} is ignored{hint}")
    return tuple(dict.fromkeys(out))


def split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise UrlError("expected a URL of the form scheme://...")
    return scheme.lower(), rest


_SCHEME = re.compile(r"[a-z][a-z0-9+._-]{0,19}")


def unsupported_scheme(scheme: str, expected: str) -> UrlError:
    """Quote the scheme only when it looks like one: ``postgresql//u:pw://h`` puts a password before ``://``."""
    shown = f" {scheme!r}" if _SCHEME.fullmatch(scheme) else " (not shown: it is not a plain scheme name)"
    return UrlError(f"unsupported scheme{shown} (expected {expected})")


DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: str.isdigit() is true for '²' and int() takes '٣'


def parse_authority(text: str) -> Authority:
    userinfo, at, hostport = text.rpartition("@")
    user = password = None
    if at:
        raw_user, colon, raw_password = userinfo.partition(":")
        user = unquote(raw_user) or None
        password = unquote(raw_password) if colon else None
    host, port = parse_hostport(hostport)
    return Authority(user=user, password=password, host=host, port=port)


_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
BAD_HOST = "not a valid host name or IP address"


def check_host(host: str) -> str:
    """``host`` if it is a plausible DNS name (underscores allowed) or an IPv4/IPv6 literal, else ``UrlError``.

    The reason never quotes the host: it may come from a mangled URL and hold part of a password.
    """
    if host.startswith("[") and host.endswith("]"):
        raise UrlError(f"{BAD_HOST}: write an IPv6 address without brackets")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlError(BAD_HOST) from None
        return host
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise UrlError(BAD_HOST + (" (Unix-socket paths are not supported)" if "/" in host else ""))
    if all(label.isascii() and label.isdigit() for label in labels):  # looks like IPv4: it must be one
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UrlError(BAD_HOST) from None
    return host


def parse_hostport(text: str) -> tuple[str | None, int | None]:
    """``host``, ``host:port``, ``[::1]:port``; the port must be an integer in 1..65535."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UrlError("malformed IPv6 host")
        port_text = rest[1:] if rest else ""
    else:
        if "," in text:
            raise UrlError("several hosts in one URL are not supported")
        host, _, port_text = text.partition(":")
    port = None
    if port_text:
        if not DIGITS.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise UrlError("port is not an integer in 1..65535")
        port = int(port_text)
    host = unquote(host)
    return (check_host(host) if host else None), port


_AMBIGUOUS = "ambiguous '@' in the URL: percent-encode '@' (%40), '/' (%2F) and '?' (%3F) in credentials"


def _first(text: str, chars: str) -> int:
    return min((i for i in (text.find(c) for c in chars) if i >= 0), default=len(text))


def parse_url(url: str) -> ParsedUrl:
    """Split ``scheme://userinfo@host:port/path?query``.

    The authority normally ends at the first ``/``, ``?`` or ``#``. When an ``@`` appears after that point
    the password itself holds one of those characters, so the userinfo ends at the *last* ``@`` instead
    (``rpartition``); if an ``@`` in a query value makes both readings plausible, the URL is rejected
    rather than risk rendering part of a secret as a host name.
    """
    scheme, rest = split_scheme(url)
    cut = _first(rest, "/?#")
    authority_text, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        # A password holding '/', '?' or '#' cuts the authority short; an '@' in a query value does not.
        # When the short reading is valid and the '@' sits in the query, both are plausible: refuse.
        in_query = "?" in tail[: tail.find("@")]
        if in_query:
            try:
                parse_authority(authority_text)
            except UrlError:
                pass
            else:
                raise UrlError(_AMBIGUOUS)
        userinfo, _, after = rest.rpartition("@")
        if _first(userinfo.partition(":")[0], "/?#") < len(userinfo.partition(":")[0]):
            raise UrlError(_AMBIGUOUS)
        cut = _first(after, "/?#")
        authority_text, tail = f"{userinfo}@{after[:cut]}", after[cut:]
    authority = parse_authority(authority_text)
    path, _, query = tail.partition("#")[0].partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    after_secret: dict[str, str] = {}
    secret: str | None = None
    for name, _ in pairs:
        if secret is not None and name not in SECRET_PARAMS:
            after_secret.setdefault(name, secret)
        if name in SECRET_PARAMS:
            secret = name
    return ParsedUrl(scheme=scheme, authority=authority, path=unquote(path[1:]), query=dict(pairs),
                     after_secret=tuple(after_secret.items()))
