"""Labelled synthetic frames for training and testing the source classifier.

The camera simulator renders stars, sky, hot pixels and cosmic rays (`obsctl.simulators.render`);
a classifier also needs galaxies, satellite trails, saturated stars with their bleed columns
and diffraction spikes, and it needs to know which pixel belongs to which kind of object.
`render_labelled_frame` draws all of them on a small calibrated frame (bias removed, dark
subtracted with the hot pixels' residuals left, sky still on it: what the photometry stage
sees) with the same Moffat PSF the camera simulator uses, and returns a label image that
names the object dominating each pixel.

Everything is in electrons with a gain of 1 e-/ADU, so ADU and electrons coincide.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from obsctl.simulators.render import add_stars, moffat_stamp, stamp_radius_px

__all__ = [
    "LABEL_ARTIFACT",
    "LABEL_CONFLICT",
    "LABEL_COSMIC_RAY",
    "LABEL_GALAXY",
    "LABEL_HOT_PIXEL",
    "LABEL_NONE",
    "LABEL_STAR",
    "LabelledFrame",
    "render_labelled_frame",
    "sersic_image",
]

log = logging.getLogger(__name__)

LABEL_STAR = 0
LABEL_GALAXY = 1
LABEL_COSMIC_RAY = 2
LABEL_HOT_PIXEL = 3
LABEL_ARTIFACT = 4
LABEL_NONE = -1
"""No object dominates the pixel (sky)."""
LABEL_CONFLICT = -2
"""Objects of different kinds overlap: a detection here has no single true class."""

_STREAM = 0x1ABE1  # keeps these draws apart from the camera simulator's streams


@dataclass(frozen=True)
class LabelledFrame:
    """A calibrated synthetic frame with the truth of every pixel.

    Attributes
    ----------
    image : numpy.ndarray of float32
        Calibrated pixels (electrons = ADU), sky included, shape ``(size, size)``.
    labels : numpy.ndarray of int8
        The class dominating each pixel (``LABEL_*``).
    hot_map : numpy.ndarray of bool
        The hot pixels a master dark would reveal (True = hot), including those whose
        residual is lost in the noise.
    fwhm_px : float
        PSF FWHM (pixel).
    beta : float
        Moffat beta of the PSF.
    read_noise_e : float
        Read noise (electrons).
    sky_e : float
        Mean sky level (electrons per pixel).
    saturation_e : float
        Level at which pixels saturate (electrons = ADU).
    galaxy_re_fwhm : numpy.ndarray of float32
        Per pixel, the half-light radius (in PSF FWHM) of the galaxy painted there, else NaN.
    """

    image: NDArray[np.float32]
    labels: NDArray[np.int8]
    hot_map: NDArray[np.bool_]
    fwhm_px: float
    beta: float
    read_noise_e: float
    sky_e: float
    saturation_e: float
    galaxy_re_fwhm: NDArray[np.float32]


class _Painter:
    """Paints object regions into the label image; different kinds overlapping conflict."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.labels = np.full(shape, LABEL_NONE, dtype=np.int8)

    def paint(self, rows: NDArray[np.int64], cols: NDArray[np.int64], label: int) -> None:
        ny, nx = self.labels.shape
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        r, c = rows[inside], cols[inside]
        current = self.labels[r, c]
        clash = (current != LABEL_NONE) & (current != label)
        self.labels[r, c] = np.where(clash, LABEL_CONFLICT, label).astype(np.int8)

    def disk(self, x: float, y: float, radius: float, label: int) -> None:
        r = math.ceil(radius)
        oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
        cy, cx = round(y), round(x)
        keep = (oy + cy - y) ** 2 + (ox + cx - x) ** 2 <= radius**2
        self.paint((oy[keep] + cy).astype(np.int64), (ox[keep] + cx).astype(np.int64), label)

    def segment(
        self, x0: float, y0: float, x1: float, y1: float, radius: float, label: int
    ) -> None:
        ny, nx = self.labels.shape
        lo_x, hi_x = (
            max(0, math.floor(min(x0, x1) - radius)),
            min(nx - 1, math.ceil(max(x0, x1) + radius)),
        )
        lo_y, hi_y = (
            max(0, math.floor(min(y0, y1) - radius)),
            min(ny - 1, math.ceil(max(y0, y1) + radius)),
        )
        if lo_x > hi_x or lo_y > hi_y:
            return
        yy, xx = np.mgrid[lo_y : hi_y + 1, lo_x : hi_x + 1]
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0.0, 1.0)
        near = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)) <= radius
        self.paint(yy[near].astype(np.int64), xx[near].astype(np.int64), label)


def _sersic_b(n: float) -> float:
    # Ciotti & Bertin (1999) asymptotic expansion; good to 1e-4 for n >= 0.36.
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def sersic_image(
    radius_px: int,
    dx: float,
    dy: float,
    *,
    re_px: float,
    n: float,
    axis_ratio: float,
    angle_rad: float,
    oversample: int = 4,
    core_oversample: int = 16,
) -> NDArray[np.float64]:
    """Return a pixel-integrated Sersic profile normalised to unit sum over the stamp.

    Parameters
    ----------
    radius_px : int
        Stamp half-size (pixel); the stamp is ``2 * radius_px + 1`` square.
    dx, dy : float
        Offset of the centre from the stamp's centre pixel (pixel).
    re_px : float
        Half-light radius along the major axis (pixel).
    n : float
        Sersic index (0.5 Gaussian-like, 1 exponential disk, 4 de Vaucouleurs).
    axis_ratio : float
        Minor over major axis, in (0, 1].
    angle_rad : float
        Position angle of the major axis from the x axis (radian).
    oversample : int, optional
        Sub-pixel samples per axis.
    core_oversample : int, optional
        Sub-pixel samples per axis in the 3 x 3 pixels around the centre, where a high-index
        profile's cusp needs them (a sample falling on the centre of an n = 4 profile would
        otherwise carry a third of its light).

    Returns
    -------
    numpy.ndarray of float64
        Shape ``(2 * radius_px + 1, 2 * radius_px + 1)``, indexed ``[y, x]``, summing to 1.
    """
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    b = _sersic_b(n)

    def integrated(half: int, samples: int) -> NDArray[np.float64]:
        sub = (np.arange(samples) + 0.5) / samples - 0.5
        grid = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()
        yy, xx = np.meshgrid(grid - dy, grid - dx, indexing="ij")
        u = xx * c + yy * s
        v = (-xx * s + yy * c) / axis_ratio
        r = np.sqrt(u * u + v * v) / re_px
        size = 2 * half + 1
        values = np.exp(-b * (r ** (1.0 / n) - 1.0)).reshape(size, samples, size, samples)
        result: NDArray[np.float64] = values.mean(axis=(1, 3))
        return result

    pixels = integrated(radius_px, oversample)
    core = min(1, radius_px)
    centre = slice(radius_px - core, radius_px + core + 1)
    pixels[centre, centre] = integrated(core, core_oversample)
    normalised: NDArray[np.float64] = pixels / pixels.sum()
    return normalised


def _flux_for_snr(snr: NDArray[np.float64], n_pix: float, var_pix: float) -> NDArray[np.float64]:
    """Flux (e-) giving an aperture S/N over ``n_pix`` pixels of background variance."""
    # snr^2 (F + n var) = F^2  ->  F = (snr^2 + sqrt(snr^4 + 4 snr^2 n var)) / 2
    s2 = snr * snr
    flux: NDArray[np.float64] = 0.5 * (s2 + np.sqrt(s2 * s2 + 4.0 * s2 * n_pix * var_pix))
    return flux


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> NDArray[np.float64]:
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


def render_labelled_frame(
    seed: int,
    *,
    size: int = 256,
    n_stars: int = 50,
    n_galaxies: int = 20,
    n_cosmic_rays: int = 14,
    n_hot_pixels: int = 12,
    trails_mean: float = 8.0,
    saturated_stars: tuple[int, int] = (0, 2),
    fwhm_range_px: tuple[float, float] = (1.6, 5.0),
) -> LabelledFrame:
    """Render one labelled calibrated frame.

    Stars get aperture S/N log-uniform from 3 to 3000, and one in five a companion 1.2-4 FWHM
    away; stars and galaxies may sit up to 2 px beyond the edge; galaxies (Sersic index 0.5-4, axis
    ratio 0.3-1, half-light radius 1-4 PSF FWHM, convolved with the PSF) S/N 5 to 1000;
    cosmic rays (single pixels, small blobs and straight tracks 2-20 px long) and hot-pixel
    residuals both deposit 80-20000 e- (log-uniform), so only the hot-pixel map tells them
    apart; trails are PSF-wide straight segments 10-200 px long at 1-60 sigma per pixel;
    saturated stars peak at 2-60 times the saturation level, bleed along their column and
    carry four diffraction spikes.

    Parameters
    ----------
    seed : int
        Seed of everything drawn; equal seeds give equal frames.
    size : int, optional
        Frame side (pixel).
    n_stars, n_galaxies, n_cosmic_rays, n_hot_pixels : int, optional
        Objects of each kind (placed uniformly, overlaps allowed).
    trails_mean : float, optional
        Mean number of trail segments (Poisson).
    saturated_stars : tuple of int, optional
        Inclusive range of the number of saturated stars.
    fwhm_range_px : tuple of float, optional
        Range of the PSF FWHM (pixel), drawn uniformly.

    Returns
    -------
    LabelledFrame
        The frame and its truth.
    """
    rng = np.random.default_rng([seed, _STREAM])
    shape = (size, size)
    fwhm = float(rng.uniform(*fwhm_range_px))
    beta = float(rng.uniform(2.5, 5.0))
    sky = float(_log_uniform(rng, 20.0, 3000.0, 1)[0])
    read_noise = float(rng.uniform(2.0, 10.0))
    saturation = float(rng.uniform(30000.0, 65000.0))
    var_pix = sky + read_noise**2
    sigma = math.sqrt(var_pix)
    ap_pix = math.pi * (1.5 * fwhm) ** 2

    light = np.zeros(shape, dtype=np.float32)
    painter = _Painter(shape)
    re_map = np.full(shape, np.nan, dtype=np.float32)

    def uniform_xy(count: int, margin: float = 2.0) -> tuple[NDArray[np.float64], ...]:
        x = rng.uniform(margin, size - 1 - margin, count)
        y = rng.uniform(margin, size - 1 - margin, count)
        return x, y

    # Stars, some cut by the frame's edge, and close companions (blends are still stars).
    sx, sy = uniform_xy(n_stars, margin=-2.0)
    n_close = n_stars // 5
    host = rng.integers(0, n_stars, n_close)
    sep_px = rng.uniform(1.2, 4.0, n_close) * fwhm
    pair_angle = rng.uniform(0.0, 2.0 * math.pi, n_close)
    sx = np.concatenate([sx, sx[host] + sep_px * np.cos(pair_angle)])
    sy = np.concatenate([sy, sy[host] + sep_px * np.sin(pair_angle)])
    s_flux = _flux_for_snr(_log_uniform(rng, 3.0, 3000.0, sx.size), ap_pix, var_pix)
    add_stars(light, sx, sy, s_flux, fwhm_px=fwhm, beta=beta)
    for x, y in zip(sx, sy, strict=True):
        painter.disk(float(x), float(y), max(1.5, 0.75 * fwhm), LABEL_STAR)

    # Galaxies: Sersic profiles convolved with the PSF, drawn into the light image.
    psf_r = stamp_radius_px(fwhm, beta)
    psf = moffat_stamp(0.0, 0.0, fwhm_px=fwhm, beta=beta, radius_px=psf_r, oversample=3)
    gx, gy = uniform_xy(n_galaxies, margin=-2.0)
    for x, y in zip(gx, gy, strict=True):
        re_fwhm = float(_log_uniform(rng, 1.0, 4.0, 1)[0])
        re_px = re_fwhm * fwhm
        n = float(rng.uniform(0.5, 4.0))
        q = float(rng.uniform(0.3, 1.0))
        angle = float(rng.uniform(0.0, math.pi))
        radius = int(min(48, math.ceil(3.0 * re_px + 2 * fwhm)))
        cx, cy = round(x), round(y)
        model = sersic_image(
            radius, x - cx, y - cy, re_px=re_px, n=n, axis_ratio=q, angle_rad=angle
        )
        conv = np.clip(fftconvolve(model, psf, mode="same"), 0.0, None)
        g_pix = math.pi * max(1.5 * fwhm, re_px) ** 2
        flux = float(_flux_for_snr(_log_uniform(rng, 5.0, 1000.0, 1), g_pix, var_pix)[0])
        _add_stamp(light, conv * flux, cx, cy)
        core = max(2.0, 0.6 * re_px * math.sqrt(q))
        painter.disk(float(x), float(y), core, LABEL_GALAXY)
        _paint_value(re_map, float(x), float(y), core, re_fwhm)

    # Saturated stars with bleed columns and diffraction spikes.
    n_sat = int(rng.integers(saturated_stars[0], saturated_stars[1] + 1))
    bleed_cols: list[tuple[int, int, float]] = []
    for _ in range(n_sat):
        x, y = (float(v[0]) for v in uniform_xy(1, margin=10.0))
        peak_fraction = moffat_stamp(0.0, 0.0, fwhm_px=fwhm, beta=beta, radius_px=0, oversample=5)
        flux = float(_log_uniform(rng, 2.0, 60.0, 1)[0]) * saturation / float(peak_fraction[0, 0])
        add_stars(light, np.array([x]), np.array([y]), np.array([flux]), fwhm_px=fwhm, beta=beta)
        # Spikes: thin PSF-wide lines along the axes, a 1e-3 to 1e-2 share of the flux each.
        spike_len = min(60.0, 4.0 * fwhm * math.log10(flux / saturation * 10.0) + 6.0 * fwhm)
        spike_flux = flux * float(rng.uniform(1e-3, 1e-2))
        for ang in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi):
            ex, ey = x + spike_len * math.cos(ang), y + spike_len * math.sin(ang)
            _add_line(light, x, y, ex, ey, spike_flux, fwhm, beta, taper=True)
            start = 2.0 * fwhm
            painter.segment(
                x + start * math.cos(ang), y + start * math.sin(ang), ex, ey,
                max(1.5, 0.6 * fwhm), LABEL_ARTIFACT,
            )  # fmt: skip
        # The core is the saturated plateau (where the Moffat profile exceeds full well) plus
        # one FWHM: detections inside it are the star, beyond it along the column the bleed.
        alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        peak = flux * float(peak_fraction[0, 0])
        r_sat = alpha * math.sqrt(max((peak / saturation) ** (1.0 / beta) - 1.0, 0.0))
        core = max(2.0, 1.5 * fwhm, r_sat + fwhm)
        bleed_cols.append((round(x), round(y), core))
        painter.disk(x, y, core, LABEL_STAR)

    # Satellite / aircraft trails.
    for _ in range(int(rng.poisson(trails_mean))):
        length = float(_log_uniform(rng, 10.0, 200.0, 1)[0])
        angle = float(rng.uniform(0.0, math.pi))
        mx, my = (float(v[0]) for v in uniform_xy(1))
        dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
        peak_sigma = float(_log_uniform(rng, 1.0, 60.0, 1)[0])
        # A Gaussian line's peak is its flux per unit length / (1.064 FWHM).
        per_px = peak_sigma * sigma * 1.064 * fwhm
        _add_line(light, mx - dx, my - dy, mx + dx, my + dy, per_px * length, fwhm, beta)
        painter.segment(mx - dx, my - dy, mx + dx, my + dy, max(1.5, 0.7 * fwhm), LABEL_ARTIFACT)

    # Photon and read noise on the light plus sky.
    expected = light + np.float32(sky)
    image = expected + rng.normal(0.0, 1.0, shape).astype(np.float32) * np.sqrt(
        np.maximum(expected, 0.0) + read_noise**2
    ).astype(np.float32)

    # Cosmic rays: charge added after the optics, so sharper than any PSF.
    for _ in range(n_cosmic_rays):
        rows, cols = _cosmic_ray_pixels(rng, size)
        energy = float(_log_uniform(rng, 80.0, 20000.0, 1)[0])
        share = rng.uniform(0.6, 1.4, rows.size)
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        np.add.at(image, (rows[inside], cols[inside]), (energy * share / share.sum())[inside])
        grown_r = (rows[:, None] + np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])[None, :]).ravel()
        grown_c = (cols[:, None] + np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])[None, :]).ravel()
        painter.paint(grown_r, grown_c, LABEL_COSMIC_RAY)

    # Hot pixels: the master dark knows them all; only some leave a residual above the noise
    # (a mis-scaled dark, or no dark at all), the rest are sprinkled as map-only distractors.
    hot_map = rng.random(shape) < float(rng.uniform(0.0005, 0.004))
    hy = rng.integers(1, size - 1, n_hot_pixels)
    hx = rng.integers(1, size - 1, n_hot_pixels)
    residual = _log_uniform(rng, 80.0, 20000.0, n_hot_pixels)
    for y, x, r in zip(hy, hx, residual, strict=True):
        image[y, x] += np.float32(r + rng.normal(0.0, math.sqrt(r)))
        hot_map[y, x] = True
        if rng.random() < 0.2:  # a charge-transfer tail into the next row
            image[y + 1, x] += np.float32(r * rng.uniform(0.05, 0.3))
        painter.disk(float(x), float(y), 1.0, LABEL_HOT_PIXEL)

    # Saturation: full wells spill along their column (bleed), then everything clips.
    for cx, cy, core in bleed_cols:
        _bleed(image, cx, cy, saturation, painter, fwhm, core)
    np.minimum(image, np.float32(saturation), out=image)

    return LabelledFrame(
        image=np.ascontiguousarray(image, dtype=np.float32),
        labels=painter.labels,
        hot_map=hot_map,
        fwhm_px=fwhm,
        beta=beta,
        read_noise_e=read_noise,
        sky_e=sky,
        saturation_e=saturation,
        galaxy_re_fwhm=re_map,
    )


def _add_stamp(image: NDArray[np.float32], stamp: NDArray[np.float64], cx: int, cy: int) -> None:
    r = stamp.shape[0] // 2
    ny, nx = image.shape
    y0, y1 = max(0, cy - r), min(ny, cy + r + 1)
    x0, x1 = max(0, cx - r), min(nx, cx + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    image[y0:y1, x0:x1] += stamp[y0 - cy + r : y1 - cy + r, x0 - cx + r : x1 - cx + r].astype(
        np.float32
    )


def _paint_value(
    target: NDArray[np.float32], x: float, y: float, radius: float, value: float
) -> None:
    r = math.ceil(radius)
    cy, cx = round(y), round(x)
    ny, nx = target.shape
    for oy in range(-r, r + 1):
        for ox in range(-r, r + 1):
            inside = (cy + oy - y) ** 2 + (cx + ox - x) ** 2 <= radius * radius
            if 0 <= cy + oy < ny and 0 <= cx + ox < nx and inside:
                target[cy + oy, cx + ox] = value


def _add_line(
    image: NDArray[np.float32],
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    flux: float,
    fwhm: float,
    beta: float,
    *,
    taper: bool = False,
) -> None:
    """Draw a PSF-wide straight line of total ``flux`` as closely spaced point sources."""
    length = math.hypot(x1 - x0, y1 - y0)
    n = max(2, math.ceil(length / 0.3))
    t = np.linspace(0.0, 1.0, n)
    weights = (1.0 - t) ** 2 if taper else np.ones(n)
    weights = weights / weights.sum() * flux
    add_stars(image, x0 + t * (x1 - x0), y0 + t * (y1 - y0), weights, fwhm_px=fwhm, beta=beta)


def _cosmic_ray_pixels(
    rng: np.random.Generator, size: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pixels of one hit: a single pixel, a small blob, or a straight track."""
    y0, x0 = rng.uniform(0, size, 2)
    kind = rng.random()
    if kind < 0.35:
        return np.array([int(y0)]), np.array([int(x0)])
    if kind < 0.5:
        count = int(rng.integers(2, 5))
        oy = rng.integers(-1, 2, count)
        ox = rng.integers(-1, 2, count)
        return (int(y0) + np.append(oy, 0)).astype(np.int64), (int(x0) + np.append(ox, 0)).astype(
            np.int64
        )
    length = float(rng.uniform(2.0, 20.0))
    angle = float(rng.uniform(0.0, math.pi))
    t = np.linspace(-0.5, 0.5, 2 * math.ceil(length) + 1) * length
    py = np.floor(y0 + t * math.sin(angle)).astype(np.int64)
    px = np.floor(x0 + t * math.cos(angle)).astype(np.int64)
    _, first = np.unique(py * (size + 64) + px, return_index=True)
    keep = np.sort(first)
    return py[keep], px[keep]


def _bleed(
    image: NDArray[np.float32],
    cx: int,
    cy: int,
    saturation: float,
    painter: _Painter,
    fwhm: float,
    core: float,
) -> None:
    """Spill the charge above full well up and down each column around a saturated star."""
    ny, nx = image.shape
    half = int(3 * fwhm) + 2
    for col in range(max(0, cx - half), min(nx, cx + half + 1)):
        column = image[:, col]
        over = column > saturation
        if not over[max(0, cy - half) : cy + half + 1].any():
            continue
        excess = float(np.sum(column[over] - saturation))
        rows = np.flatnonzero(over)
        top, bottom = int(rows.min()), int(rows.max())
        extra = math.ceil(excess / saturation / 2.0)
        lo, hi = max(0, top - extra), min(ny, bottom + extra + 1)
        column[lo:hi] = np.float32(saturation)
        run = np.arange(lo, hi)
        outside = np.abs(run - cy) > core + 1
        if outside.any():
            r = run[outside].astype(np.int64)
            painter.paint(r, np.full(r.size, col, dtype=np.int64), LABEL_ARTIFACT)
