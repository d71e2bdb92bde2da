"""Storage: the data directory, raw frames and headers, the exposure log, the reference catalog."""
