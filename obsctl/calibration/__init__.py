"""Calibration masters: their records, how one is chosen for a frame, and how they are built."""
