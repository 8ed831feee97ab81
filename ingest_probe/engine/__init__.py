"""Running probes: the supervisor (deadlines, the cap, the close budget) and the one-shot run of N targets."""
