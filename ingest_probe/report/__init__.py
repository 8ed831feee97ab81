"""The typed report: its model and the pure builder (with the manifest)."""
