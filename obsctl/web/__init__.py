"""The web side: the control API (`api`) and the live quick-look page.

- `api`: status, sequences, exposures, metrics and server-sent events, driving the daemon
  through a protocol;
- `quicklook`: the page's routes; `frames`, `focus` and `candidates`: what they read (frames,
  focus runs, difference candidates, transients and moving objects);
  `previews`: the previews made on the server; `static/`: the page.
"""

from obsctl.web.quicklook import QUICKLOOK, QuickLook, add_quicklook, static_dir

__all__ = ["QUICKLOOK", "QuickLook", "add_quicklook", "static_dir"]
