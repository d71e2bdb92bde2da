"""Device implementations for real hardware (installed as ``obsctl.drivers``)."""
