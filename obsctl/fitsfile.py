"""Writing FITS files so that a crash never leaves a partial file under the final name."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.devices import CameraImage

__all__ = ["basic_header", "write_fits_atomic"]

log = logging.getLogger(__name__)


def basic_header(image: CameraImage, *, image_type: str, filter_name: str | None) -> fits.Header:
    """Return the minimal header of a camera image: time, exposure, type, camera settings.

    Parameters
    ----------
    image : CameraImage
        The downloaded image and its metadata.
    image_type : str
        ``LIGHT``, ``DARK``, ``BIAS`` or ``FLAT``.
    filter_name : str or None
        The filter in the beam, None without a filter wheel.

    Returns
    -------
    astropy.io.fits.Header
        Cards for the primary HDU.
    """
    m = image.metadata
    header = fits.Header()
    if m.start_time is not None:
        header["DATE-OBS"] = (m.start_time.strftime("%Y-%m-%dT%H:%M:%S.%f"), "UTC start")
    header["EXPTIME"] = (m.exposure_s, "[s] exposure time")
    header["IMAGETYP"] = (image_type.upper(), "LIGHT, DARK, BIAS or FLAT")
    if filter_name is not None:
        header["FILTER"] = (filter_name, "filter in the beam")
    header["XBINNING"] = (m.bin_x, "binning in x")
    header["YBINNING"] = (m.bin_y, "binning in y")
    header["XORGSUBF"] = (m.start_x, "[px] subframe origin x (binned)")
    header["YORGSUBF"] = (m.start_y, "[px] subframe origin y (binned)")
    header["XPIXSZ"] = (m.pixel_size_x_um * m.bin_x, "[um] binned pixel size x")
    header["YPIXSZ"] = (m.pixel_size_y_um * m.bin_y, "[um] binned pixel size y")
    if m.gain is not None:
        header["GAIN"] = (m.gain, "camera gain setting")
    if m.offset is not None:
        header["OFFSET"] = (m.offset, "camera offset setting")
    header["EGAIN"] = (m.electrons_per_adu, "[e-/ADU] conversion gain")
    if m.ccd_temperature_c is not None:
        header["CCD-TEMP"] = (round(m.ccd_temperature_c, 2), "[C] sensor temperature")
    if m.set_temperature_c is not None:
        header["SET-TEMP"] = (m.set_temperature_c, "[C] cooler set point")
    header["READOUTM"] = (m.readout_mode, "readout mode")
    header["INSTRUME"] = (m.sensor_name, "sensor")
    header["CAMERA"] = (m.camera_name, "camera device name")
    return header


def write_fits_atomic(
    path: str | Path,
    data: NDArray[Any],
    header: fits.Header | Iterable[tuple[str, Any]] | None = None,
) -> Path:
    """Write a primary-HDU FITS file: temporary name, fsync, rename, fsync of the directory.

    Parameters
    ----------
    path : str or pathlib.Path
        Final file name; its directory is created if missing.
    data : numpy.ndarray
        Pixels; ``uint16`` is stored the FITS way (int16 with BZERO = 32768).
    header : astropy.io.fits.Header, iterable of (key, value) or None
        Extra header cards.

    Returns
    -------
    pathlib.Path
        The final path.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.asarray(data), header=fits.Header(header) if header else None)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            hdu.writeto(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, final)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.debug("wrote %s", final)
    return final
