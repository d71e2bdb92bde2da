"""Colour (Bayer) sensors: the raw mosaic split into full-resolution colour planes.

A one-shot-colour camera puts a red, green or blue filter over every pixel in a repeating
2x2 cell; measured as one mono image, every star is a checkerboard of three brightnesses
and the classifier sees hot pixels and cosmic rays where there are stars. Each plane here is
rebuilt at the mosaic's resolution by normalised convolution (bilinear demosaicing): a pixel
of the plane's colour keeps its value, others get the weighted mean of their neighbours of
that colour. Geometry is unchanged, so the raw header's WCS still applies, and so do masks.
Green, with twice the pixels and the best signal, is the plane for detection, astrometry and
the zero point; red and blue are for colours.
"""

from __future__ import annotations

import numpy as np
import sep
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import binary_dilation, convolve

__all__ = [
    "bayer_masks",
    "demosaic",
    "forced_aperture_flux",
    "green_plane_mask",
    "pattern_from_pixels",
]

# The green pair must be this many times closer in level than the other diagonal pair before
# the pixels overrule the header: a grey sky makes red and blue alike too.
_GREEN_PAIR_MARGIN = 3.0

_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
# Bilinear weights: green sits on a quincunx (4 nearest neighbours), red and blue on a square
# lattice of spacing 2 (4 diagonal and 2 or 4 edge neighbours).
_GREEN_KERNEL = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float32) / 4.0
_RB_KERNEL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 4.0


def bayer_masks(shape: tuple[int, int], pattern: str) -> dict[str, NDArray[np.bool_]]:
    """Return where the red, green and blue pixels of a mosaic are.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)``.
    pattern : str
        ``"RGGB"``, ``"BGGR"``, ``"GRBG"`` or ``"GBRG"``: the colours of the first 2x2 cell,
        row 0 then row 1 (array rows as numpy reads the FITS file).

    Returns
    -------
    dict of str to numpy.ndarray of bool
        ``"R"``, ``"G"`` and ``"B"`` masks of the given shape.

    Raises
    ------
    ValueError
        If the pattern is not one of the four.
    """
    key = pattern.strip().upper()
    if key not in _PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; expected one of {_PATTERNS}")
    ny, nx = shape
    rows = np.arange(ny)[:, None] % 2
    cols = np.arange(nx)[None, :] % 2
    masks = {}
    for colour in "RGB":
        mask = np.zeros(shape, dtype=bool)
        for i, c in enumerate(key):
            if c == colour:
                mask |= (rows == i // 2) & (cols == i % 2)
        masks[colour] = mask
    return masks


def pattern_from_pixels(data: NDArray[np.floating], pattern: str) -> str:
    """Return the Bayer pattern the pixels bear out: the header's, or its rows swapped.

    The two green pixels of a cell sit on one diagonal and see the same light, so their
    median levels match; red and blue on the other diagonal differ. A pattern written for
    rows read top-down but stored bottom-up (FITS files made from camera raw files often
    are) puts green on the wrong diagonal, and every plane would be the wrong colour. When
    the header's green diagonal differs in level by `_GREEN_PAIR_MARGIN` times more than the
    other diagonal, the rows of the pattern are swapped.

    Parameters
    ----------
    data : numpy.ndarray
        The mosaic (ADU), shape ``(ny, nx)``, at least 2x2.
    pattern : str
        The header's pattern (see `bayer_masks`).

    Returns
    -------
    str
        The pattern to use.
    """
    key = pattern.strip().upper()
    image = np.asarray(data)
    level = [[float(np.median(image[i::2, j::2])) for j in range(2)] for i in range(2)]
    main = abs(level[0][0] - level[1][1])
    anti = abs(level[0][1] - level[1][0])
    green_on_main = key[0] == "G"
    header_diff, other_diff = (main, anti) if green_on_main else (anti, main)
    if header_diff > _GREEN_PAIR_MARGIN * other_diff:
        return key[2:] + key[:2]
    return key


def demosaic(data: NDArray[np.floating], pattern: str) -> dict[str, NDArray[np.float32]]:
    """Return the red, green and blue planes of a raw mosaic at full resolution.

    Parameters
    ----------
    data : numpy.ndarray
        The calibrated mosaic, shape ``(ny, nx)``, any real dtype (ADU).
    pattern : str
        The Bayer pattern (see `bayer_masks`).

    Returns
    -------
    dict of str to numpy.ndarray of float32
        ``"R"``, ``"G"``, ``"B"`` planes (ADU per pixel of that colour). A pixel of a plane's
        own colour keeps its value exactly; the others are interpolated, so their noise is
        correlated and lower than a measured pixel's.
    """
    image = np.asarray(data, dtype=np.float32)
    planes = {}
    for colour, mask in bayer_masks(image.shape, pattern).items():
        kernel = _GREEN_KERNEL if colour == "G" else _RB_KERNEL
        weight = mask.astype(np.float32)
        # Normalised convolution: the weighted sum of a colour's pixels over the sum of the
        # weights that reached the pixel; at the edges fewer neighbours count, none invented.
        summed = convolve(image * weight, kernel, mode="constant")
        norm = convolve(weight, kernel, mode="constant")
        plane = np.where(mask, image, summed / np.maximum(norm, np.float32(1e-6)))
        planes[colour] = plane.astype(np.float32, copy=False)
    return planes


def green_plane_mask(mask: ArrayLike, pattern: str) -> NDArray[np.bool_]:
    """Return the bad pixels of the green plane that `demosaic` builds from a mosaic.

    A bad green pixel spoils itself and the four red or blue pixels interpolated from it;
    bad red and blue pixels do not enter the green plane.

    Parameters
    ----------
    mask : array_like of bool
        Bad pixels of the mosaic (True = bad), shape ``(ny, nx)``.
    pattern : str
        The Bayer pattern (see `bayer_masks`).

    Returns
    -------
    numpy.ndarray of bool
        Bad pixels of the green plane.
    """
    bad = np.asarray(mask, dtype=bool)
    bad_green = bad & bayer_masks(bad.shape, pattern)["G"]
    return np.asarray(binary_dilation(bad_green, structure=_GREEN_KERNEL > 0), dtype=bool)


def forced_aperture_flux(
    plane: NDArray[np.float32],
    x: ArrayLike,
    y: ArrayLike,
    *,
    radius_px: float,
    gain_e_per_adu: float,
    mask: ArrayLike | None = None,
    back_size: int = 64,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Measure one colour plane in circular apertures at given positions.

    Parameters
    ----------
    plane : numpy.ndarray of float32
        A plane from `demosaic` (ADU), background not subtracted.
    x, y : array_like
        Aperture centres (pixel, zero-based), e.g. the green plane's centroids.
    radius_px : float
        Aperture radius (pixel).
    gain_e_per_adu : float
        Conversion gain (e-/ADU), for the sources' shot noise.
    mask : array_like of bool, optional
        Bad pixels (True = bad).
    back_size : int, optional
        Background mesh size (pixel).

    Returns
    -------
    flux, flux_err : numpy.ndarray of float64
        Background-subtracted flux (ADU) and its error; the error treats the interpolated
        pixels as independent, so it is a lower bound (by up to a factor 2 for blue and red,
        which are three quarters interpolated).
    """
    data = np.ascontiguousarray(plane, dtype=np.float32)
    bad = None if mask is None else np.ascontiguousarray(mask, dtype=bool)
    background = sep.Background(data, mask=bad, bw=back_size, bh=back_size)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0), np.zeros(0)
    flux, err, _ = sep.sum_circle(
        data - background.back(),
        x,
        y,
        radius_px,
        err=background.globalrms,
        gain=gain_e_per_adu,
        mask=bad,
    )
    return np.asarray(flux, dtype=np.float64), np.asarray(err, dtype=np.float64)
