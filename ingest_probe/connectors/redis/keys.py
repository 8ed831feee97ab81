"""The Redis keys: ``REDIS_URL``, the part keys that override it, TLS files and the cache policy (manifest only)."""

from __future__ import annotations

from ingest_probe.config.keys import KeySet, KeySpec, key, service_key
from ingest_probe.config.reader import URL_PARTS_RULE
from ingest_probe.connectors.redis.settings import NONE_WORDS, PRESETS, STRATEGY_SPELLINGS, shown_url
from ingest_probe.defaults import CLIENT_NAME, REDIS_PORT

_R, _RS = "Redis", "Redis: ingest service settings (not used by ingest-probe)"


def _preset(name: str) -> str:
    ttl, max_keys, namespace = PRESETS[name]
    return f"TTL {'none' if ttl is None else ttl}, {max_keys} keys, `{namespace}`"


def _also(name: str) -> str:
    others = [spelling for spelling, preset in STRATEGY_SPELLINGS.items() if preset == name]
    return f"; also {', '.join(f'`{o}`' for o in others)}" if others else ""


KEYS = KeySet(
    prefixes=("REDIS_",),
    notes={_R: f"`REDIS_URL` and the part keys below combine by source: {URL_PARTS_RULE} (with a warning naming "
               "the key set aside). Example: with `REDIS_URL=redis://cache:6380/1` in `--env-file prod.env`, a "
               "`REDIS_HOST=old` left in the shell is ignored (a warning says so) while `--extra REDIS_HOST=other` "
               "wins; a `REDIS_PASSWORD` from the environment still supplies the password that URL leaves out."},
    specs=(
        key("REDIS_URL", "url", None, "`redis://` or `rediss://` (TLS) URL; `?password=`, `?username=`, `?db=` "
            "honoured, any other query parameter is warned about and ignored", section=_R,
            secret=True, aliases=("REDIS_URI", "REDISCLOUD_URL"), shown=shown_url),
        key("REDIS_HOST", "host", None, "host (overrides the URL's, see above)", section=_R, aliases=("CACHE_HOST",)),
        key("REDIS_PORT", "int", str(REDIS_PORT), "port (overrides the URL's, see above; a Kubernetes service link "
            "`tcp://…` in the environment is ignored with a warning)", section=_R, minimum=1, maximum=65535),
        key("REDIS_DB", "int", "0", "database number (overrides the URL's, see above)", section=_R, minimum=0),
        key("REDIS_USERNAME", "str", None, "ACL user (overrides the URL's, see above)", section=_R,
            aliases=("REDIS_USER",)),
        key("REDIS_PASSWORD", "str", None, "password (overrides the URL's, see above)", section=_R, secret=True,
            aliases=("REDIS_PASS",)),
        key("REDIS_SSL", "bool", None, "TLS (overrides the URL's scheme, see above; `rediss://` implies it)",
            section=_R),
        key("REDIS_SSL_CA_CERTS", "str", None, "CA bundle", section=_R),
        key("REDIS_SSL_CERTFILE", "str", None, "client certificate", section=_R),
        key("REDIS_SSL_KEYFILE", "str", None, "client private key", section=_R),
        key("REDIS_CLIENT_NAME", "str", None, f"CLIENT SETNAME value of the service and of the probe's connection "
            f"(unset: the probe's is `{CLIENT_NAME}`)", section=_R, aliases=("REDIS_APP_NAME",),
            service_default="emp-professional-cache"),
        key("REDIS_SOCKET_TIMEOUT", "float", None, "socket timeout in seconds", section=_R, minimum=0,
            maximum=3600),
        KeySpec(name="REDIS_CACHE_STRATEGY", kind="choice", default=None, description="cache policy preset "
                "(manifest only): " + "; ".join(f"`{name}` ({_preset(name)}{_also(name)})" for name in PRESETS),
                section=_R, choices=tuple(PRESETS), spellings=STRATEGY_SPELLINGS,
                service_default="institutional"),
        key("REDIS_CACHE_TTL_SECONDS", "int", None, "cache policy: TTL over the preset's (`off`, `none`, `null`, "
            "`disabled`: no TTL)", section=_R, minimum=0, legacy=("REDIS_TTL_SECONDS",), none_words=NONE_WORDS),
        key("REDIS_CACHE_MAX_KEYS", "int", None, "cache policy: max keys over the preset's (`off`, `none`, "
            "`null`, `disabled`: no limit)", section=_R, minimum=0, legacy=("REDIS_MAX_KEYS",),
            none_words=NONE_WORDS),
        key("REDIS_CACHE_NAMESPACE", "str", None, "cache policy: key namespace (one trailing `:` dropped)",
            section=_R),
        key("REDIS_CACHE_INVALIDATE_PREFIXES", "csv", None, "cache policy: invalidation prefixes", section=_R,
            legacy=("REDIS_INVALIDATE_PREFIXES",)),
        service_key("REDIS_HEALTH_CHECK_INTERVAL", "seconds between the service's health checks of its connection",
                    section=_RS, service_default="5.0"),
        service_key("REDIS_RETRY_ON_TIMEOUT", "the service's client retries on a timeout", section=_RS,
                    service_default="true"),
    ),
)
