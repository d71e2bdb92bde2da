"""obsctl: an observatory-control daemon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
