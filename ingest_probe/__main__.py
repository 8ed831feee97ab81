from ingest_probe.cli import main

main()
