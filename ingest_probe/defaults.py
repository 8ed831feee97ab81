"""Every default of ingest-probe, written once: deadlines, fan-out, ports, names and the exit-code policy."""

from __future__ import annotations

#: Per-probe deadline ceiling in seconds (``--timeout``; ``topics``: the whole provisioning run).
TIMEOUT = 5.0
#: Each probe's deadline is drawn from ``[TIMEOUT * (1 - JITTER), TIMEOUT]`` (``--jitter``).
JITTER = 0.1
#: Seconds a probe's clients get to close, shielded from cancellation by their owner (supervisor, Prober,
#: topic provisioning). Probes never shield: they close within the deadline they are given.
CLOSE_BUDGET = 1.0
#: Library-native timeouts get this share of the time left, so the library fails first with its own, more
#: specific error and the supervisor's cancel scope stays the hard ceiling.
LIBRARY_SHARE = 0.85
#: At most this many probes in flight at once (``--concurrency``); each deadline starts with its slot.
CONCURRENCY = 100
#: A TLS peer certificate that expires within this many days makes its target ``degraded`` (``cert_expiry``;
#: ``--cert-warn-days``; 0: only an expired one).
CERT_WARN_DAYS = 14.0
#: Seconds each PostgreSQL connection attempt (TCP, TLS, authentication) may take (capped by the deadline).
CONNECT_TIMEOUT = 5.0

POSTGRES_PORT = 5432
POSTGRES_DATABASE = "postgres"
REDIS_PORT = 6379
KAFKA_PORT = 9092
#: How the probe's own connections identify themselves (application_name, CLIENT SETNAME, Kafka client id),
#: and the prefix of every task name (``ingest-probe-<target>``).
CLIENT_NAME = "ingest-probe"

# The exit-code policy (Nagios plugin meaning); with several checks the worst wins.
EXIT_OK = 0
EXIT_WARNING = 1
EXIT_CRITICAL = 2
EXIT_UNKNOWN = 3
#: A command ended by a signal exits with this plus the signal's number (SIGINT 130, SIGTERM 143).
EXIT_SIGNAL_BASE = 128
#: ``--fail-on``: which outcomes fail a run. ``degraded`` (the default): WARNING (a degraded or starting target,
#: topic drift, a drill warning) exits 1; ``down``: only CRITICAL and UNKNOWN fail, a WARNING exits 0.
FAIL_ON_CHOICES = ("degraded", "down")
FAIL_ON = "degraded"
#: A target's status (its value) → the exit code it stands for; any other status is ``EXIT_OK``.
STATUS_EXIT_CODES = {"down": EXIT_CRITICAL, "starting": EXIT_WARNING, "degraded": EXIT_WARNING,
                     "unknown": EXIT_UNKNOWN}

# ``serve``: the HTTP server (``ingest_probe.asgi`` under uvicorn).
#: Where it listens: loopback unless told otherwise (``--listen``).
SERVE_LISTEN = "127.0.0.1:9464"
#: Seconds from the end of one background check to the start of the next (``--interval``); results older
#: than ``--max-age`` (default twice this) are checked again on demand.
SERVE_INTERVAL = 15.0
#: Seconds in-flight requests get to finish after SIGTERM before they are cancelled (``--grace``).
SERVE_GRACE = 5.0
#: Seconds kept off Prometheus's scrape timeout so a /probe answer arrives in time (blackbox_exporter's offset).
SCRAPE_MARGIN = 0.5
#: On-demand /probe checks per second, bursts of twice that (a token bucket; beyond it: 429).
PROBE_RATE = 10.0
#: At most this many connections and requests at once; beyond it uvicorn answers 503.
SERVE_MAX_CONNECTIONS = 512
#: Bytes of a request head (request line and headers) at most: h11 drops a connection whose head grows past it
#: while arriving; one that arrived whole (asyncio reads up to 256 KiB at once) is answered 431 by the app.
SERVE_MAX_REQUEST_HEAD = 8192
#: Seconds an idle keep-alive connection stays open.
SERVE_KEEP_ALIVE = 5

#: ``watch``: the pause between two cycles of a monitor (``--interval``); ``--ingest-schedule`` follows the ingest's.
WATCH_INTERVAL = 60.0
#: ``wait``: give up after this long (``--timeout``); the first pause between attempts (``--interval``), doubling
#: up to the cap (or up to ``--interval`` when that is larger).
WAIT_TIMEOUT = 60.0
WAIT_INTERVAL = 1.0
WAIT_MAX_INTERVAL = 5.0
