"""Example and default configurations (installed as ``obsctl.configs``)."""
