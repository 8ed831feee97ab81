"""Loaded at start-up by every Python subprocess of the test suite (the conftest puts this directory on
PYTHONPATH): installs the loopback guard, recording violations to ``$INGEST_PROBE_TEST_GUARD_FILE``."""

import importlib.machinery
import importlib.util
import os
import sys

import loopback_guard

loopback_guard.install(record_file=os.environ.get(loopback_guard.ENV_FILE))

# This module shadows any sitecustomize further down sys.path (a distribution's): run that one too.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != _here]
)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
