"""Running probes: the supervisor (deadlines, cap, close budget), the Prober, the one-shot run."""
