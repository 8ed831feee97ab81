"""The command line: click commands, the process and event-loop entry, signals, output files."""
