from ingest_probe.commands.cli import main

main()
