"""The fuzz suite: generated and mutated inputs across the config, sequences, plans, the
command line and the running daemon's HTTP API. It crosses rooms, so it mirrors no source
folder. Its Hypothesis profile (``ci`` by default, ``nightly`` with
``HYPOTHESIS_PROFILE=nightly``) is loaded here, before any test module is imported.
"""

from __future__ import annotations

from . import profiles  # noqa: F401  (registers and loads the profile)
