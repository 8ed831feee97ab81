from ingest_probe.commands.cli import run

run()
