"""Pure numeric functions over numpy arrays and tables: no I/O, no logging, no asyncio.

The pipeline's stages (`obsctl.pipeline`) are thin shells around these: `calibrate` and
`combine` (masters), `photometry` and `metrics` (SEP), `astrometry` (WCS), `zeropoint`,
`tables`, `display` (the quick-look page's stretches and PNG), and `alignment` and
`subtraction` (difference imaging: reference resampling, ZOGY, detection, forced photometry).
"""
