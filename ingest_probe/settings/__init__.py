"""One service's validated configuration and the targets built from it."""
