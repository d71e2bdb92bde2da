"""Calibration masters: records and selection (`masters`), building (`build`, `fitsrows`).

The `Calibrate` stage that applies them is `obsctl.pipeline.calibrate`; the arithmetic is
`obsctl.processing.calibrate` and `obsctl.processing.combine`.
"""
