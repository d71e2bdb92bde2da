"""The live quick-look page: routes for the page and its data, and its static files."""

from obsctl.web.quicklook import QUICKLOOK, QuickLook, add_quicklook, static_dir

__all__ = ["QUICKLOOK", "QuickLook", "add_quicklook", "static_dir"]
