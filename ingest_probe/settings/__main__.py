"""``python -m ingest_probe.settings --markdown-keys`` prints the README key table (every registered kind's)."""

from __future__ import annotations

import sys

from ingest_probe.settings.service import key_registry


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["--markdown-keys"]:
        print("usage: python -m ingest_probe.settings --markdown-keys", file=sys.stderr)
        return 2
    sys.stdout.write(key_registry().markdown_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
