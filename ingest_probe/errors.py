"""The exception tree of ingest-probe; policy (exit code, retryability, a stable kind) rides on each class.

    IngestProbeError                 exit 3
    ├── ConfigError                  bad input: names the key, its source and the (redacted) value
    │   └── UsageError               a flag combination that makes no sense
    ├── InternalError                a bug (ours, or a client library's unexpected exception) in one probe
    │                                or in topic provisioning: that target's result, exit 3
    └── ProbeError                   an *expected* failure of one connector; becomes data in a result
        ├── DnsError                 the host name does not resolve
        ├── RefusedError             nothing listens / connection reset
        ├── ProbeTimeoutError        no answer before the deadline
        ├── TlsError                 handshake, certificate or "TLS required" problems
        ├── AuthError                wrong user/password, missing credentials, ACL denial
        ├── StartingError            server up but not ready (starting up, loading dataset)
        ├── ProtocolError            the peer does not speak the expected protocol
        ├── QueryError               connected, but the check query failed
        ├── NotFoundError            a named target (SQLite file, database) does not exist
        └── DriverError              the client library is missing or unusable

Probes map client-library exceptions onto this tree at the boundary (``raise ... from exc``). Anything
that is not a ``ProbeError`` is a bug: its owner (the supervisor, topic provisioning) records it as
that target's result, kind ``internal`` (never the end of the run), and the run exits 3. Cancellation
always propagates. SIGINT/SIGTERM end a command outside this tree, with ``commands.signals.Interrupted`` (a
``SystemExit``: exit 128 + the signal, 130/143).
"""

from __future__ import annotations

from typing import ClassVar

from ingest_probe.defaults import EXIT_CRITICAL, EXIT_UNKNOWN, EXIT_WARNING


class IngestProbeError(Exception):
    """Root of every error ingest-probe raises on purpose."""

    exit_code: ClassVar[int] = EXIT_UNKNOWN
    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False


class ConfigError(IngestProbeError):
    """Configuration input is missing, malformed or out of range. Its message is always one line."""

    kind = "config"

    def __str__(self) -> str:
        # One place for "one line each": a file name or a library's text may hold a newline.
        return " ".join(super().__str__().split())


class UsageError(ConfigError):
    """Command-line flags that contradict each other or need another flag."""

    kind = "usage"


class InternalError(IngestProbeError):
    """An unexpected exception in one probe (or topic provisioning), recorded as that target's result.

    The message is one line naming the target and the exception; the exception itself (with its traceback,
    shown under ``--debug``) travels beside the result, never in the report.
    """

    kind = "internal"


class ProbeError(IngestProbeError):
    """An expected failure of one connector; recorded in its result, never fatal to the run."""

    exit_code = EXIT_CRITICAL
    kind = "probe"
    #: The connector status this failure maps to (``down`` unless the server is merely starting).
    status: ClassVar[str] = "down"


class DnsError(ProbeError):
    kind = "dns"


class RefusedError(ProbeError):
    kind = "refused"
    retryable = True


class ProbeTimeoutError(ProbeError):
    kind = "timeout"
    retryable = True


class TlsError(ProbeError):
    kind = "tls"


class AuthError(ProbeError):
    kind = "auth"


class StartingError(ProbeError):
    exit_code = EXIT_WARNING
    kind = "starting"
    retryable = True
    status = "starting"


class ProtocolError(ProbeError):
    kind = "protocol"


class QueryError(ProbeError):
    kind = "query"


class NotFoundError(ProbeError):
    kind = "not_found"


class DriverError(ProbeError):
    kind = "driver"
