"""Training the source classifier on simulated frames (the ``train`` extra, never run-time)."""
