"""Storage: where a frame is on disk and in the database before anything else happens to it.

- `datadir`: `DataDir`, the one owner of the data directory's paths, databases and lock;
- `writer`: each downloaded frame to a FITS file (`raw_store`, `fitsfile`, `headers`) and an
  exposure row, in order, in the background; frames a crash left unlogged are recovered;
  while frames cannot be stored they wait in `unstored`, and acquisition pauses;
- `exposure_log` (with its `schema`): the SQLite record of exposures, failures, sequences,
  masters, frame metrics and measurements;
- `refcat`: the local reference catalog for astrometry and the zero point.
"""
