"""One home per connector kind (keys, settings, manifest, probe, error table) and their registry."""
