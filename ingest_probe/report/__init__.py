"""The typed report: its model, the pure builder and the manifest."""
