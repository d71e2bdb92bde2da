"""Bias, dark and flat correction of one frame.

Conventions of the masters (see `obsctl.calibration.masters`):

- the master bias is in ADU and holds the bias level with its fixed column/row structure;
- the master dark is *thermal only*: bias-subtracted, in ADU accumulated over its own exposure
  time, so it scales linearly to any other exposure time;
- the master flat is bias- and dark-subtracted and normalised to a median of 1.

So ``calibrated = (raw - bias - dark * exposure_s / dark_exposure_s) / flat``, in ADU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["CalibratedImage", "calibrate_image", "fits_section", "subtract_overscan"]

_SECTION = re.compile(r"^\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]$")


@dataclass(frozen=True, eq=False)
class CalibratedImage:
    """A calibrated frame and what went into it.

    Attributes
    ----------
    data : numpy.ndarray of float32
        Calibrated pixels (ADU), native byte order, C-contiguous, writeable.
    missing : tuple of str
        The corrections that could not be applied for want of a master, among ``"bias"``,
        ``"dark"`` and ``"flat"``, in that order.
    dark_scale : float or None
        Factor applied to the master dark (``exposure_s / dark_exposure_s``), None without one.
    bad_flat : numpy.ndarray of bool or None
        Pixels left unflattened because the flat there is not usable (below `min_flat` or not
        finite); None without a flat.
    """

    data: NDArray[np.float32]
    missing: tuple[str, ...]
    dark_scale: float | None
    bad_flat: NDArray[np.bool_] | None


def _as_master(name: str, master: NDArray[Any] | None, shape: tuple[int, ...]) -> Any:
    if master is None:
        return None
    if master.shape != shape:
        raise ValueError(f"master {name} has shape {master.shape}, the frame {shape}")
    return master


def calibrate_image(
    raw: NDArray[Any],
    *,
    bias: NDArray[Any] | None,
    dark: NDArray[Any] | None,
    dark_exposure_s: float | None,
    exposure_s: float,
    flat: NDArray[Any] | None,
    min_flat: float = 0.05,
) -> CalibratedImage:
    """Subtract bias and scaled dark current, divide by the flat field.

    Parameters
    ----------
    raw : numpy.ndarray
        Raw frame (ADU), two-dimensional, any real dtype and byte order (FITS data is
        big-endian).
    bias : numpy.ndarray or None
        Master bias (ADU), same shape; None when there is none.
    dark : numpy.ndarray or None
        Thermal-only master dark (ADU over `dark_exposure_s`), same shape; None when there is
        none.
    dark_exposure_s : float or None
        Exposure time of the master dark (s), > 0 when `dark` is given.
    exposure_s : float
        Exposure time of the frame (s), >= 0.
    flat : numpy.ndarray or None
        Master flat normalised to 1 (dimensionless), same shape; None when there is none.
    min_flat : float, optional
        Flat values below this (or not finite) are treated as 1 and reported in
        ``bad_flat``, so that dead or vignetted-out pixels do not blow up.

    Returns
    -------
    CalibratedImage
        Native, C-contiguous float32 pixels (ADU) and the list of missing corrections.

    Raises
    ------
    ValueError
        If the frame is not 2-D, a master's shape differs from the frame's, or an exposure
        time is out of range.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"frame must be two-dimensional, got shape {raw.shape}")
    if exposure_s < 0:
        raise ValueError(f"exposure_s must be >= 0, got {exposure_s}")
    bias = _as_master("bias", bias, raw.shape)
    dark = _as_master("dark", dark, raw.shape)
    flat = _as_master("flat", flat, raw.shape)
    # A fresh native float32 copy: SEP and the later stages need native, C-contiguous float32,
    # and the raw array (possibly a read-only memmap) must never be modified.
    data = np.array(raw, dtype=np.float32, order="C", copy=True)
    missing: list[str] = []
    if bias is not None:
        np.subtract(data, bias, out=data, casting="unsafe")
    else:
        missing.append("bias")
    dark_scale: float | None = None
    if dark is not None:
        if dark_exposure_s is None or not dark_exposure_s > 0:
            raise ValueError(f"dark_exposure_s must be > 0 with a dark, got {dark_exposure_s}")
        dark_scale = float(exposure_s) / float(dark_exposure_s)
        if dark_scale == 1.0:
            np.subtract(data, dark, out=data, casting="unsafe")
        else:
            data -= np.multiply(dark, np.float32(dark_scale), dtype=np.float32)
    else:
        missing.append("dark")
    bad_flat: NDArray[np.bool_] | None = None
    if flat is not None:
        divisor = np.asarray(flat, dtype=np.float32)
        bad_flat = ~(divisor >= np.float32(min_flat)) | ~np.isfinite(divisor)
        if bad_flat.any():
            divisor = np.where(bad_flat, np.float32(1.0), divisor)
        np.divide(data, divisor, out=data)
    else:
        missing.append("flat")
    return CalibratedImage(
        data=data, missing=tuple(missing), dark_scale=dark_scale, bad_flat=bad_flat
    )


def fits_section(text: str, shape: tuple[int, int]) -> tuple[slice, slice]:
    """Return the array slices of an IRAF/FITS section such as ``"[17:528,1:520]"``.

    Parameters
    ----------
    text : str
        The section: 1-based inclusive ``[x1:x2,y1:y2]`` (x along FITS axis 1, the columns),
        as ``TRIMSEC``, ``DATASEC`` and ``BIASSEC`` write it.
    shape : tuple of int
        Image shape ``(ny, nx)``.

    Returns
    -------
    tuple of slice
        ``(rows, columns)`` for a numpy array.

    Raises
    ------
    ValueError
        If the text is not a section, is reversed, or does not fit the image.
    """
    match = _SECTION.match(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is not a section like [x1:x2,y1:y2]")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    ny, nx = shape
    if not (1 <= x1 <= x2 <= nx and 1 <= y1 <= y2 <= ny):
        raise ValueError(f"section {text!r} does not fit a {nx}x{ny} image")
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def subtract_overscan(
    data: NDArray[np.floating], overscan: tuple[slice, slice]
) -> tuple[NDArray[np.float32], float]:
    """Subtract the bias level measured in a frame's overscan strip, row by row.

    The level of each row is the median of its overscan pixels (cosmic rays and hot pixels in
    the strip do not pull a median), smoothed by a running median over 15 rows so the read
    noise of a narrow strip is not printed into the image as row stripes.

    Parameters
    ----------
    data : numpy.ndarray
        The raw frame (ADU), shape ``(ny, nx)``.
    overscan : tuple of slice
        The overscan strip (`fits_section` of ``BIASSEC``), spanning all the rows it covers.

    Returns
    -------
    image : numpy.ndarray of float32
        The frame minus the level (rows outside the strip get the strip's median level).
    level : float
        The median level subtracted (ADU).
    """
    from scipy.ndimage import median_filter

    image = np.array(data, dtype=np.float32)
    strip = image[overscan]
    rows = np.median(strip, axis=1)
    rows = median_filter(rows, size=min(15, rows.size), mode="nearest")
    level = float(np.median(rows))
    per_row = np.full(image.shape[0], level, dtype=np.float32)
    per_row[overscan[0]] = rows
    image -= per_row[:, None]
    return image, level
