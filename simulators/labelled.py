"""Labelled synthetic frames for training and testing the source classifier.

The camera simulator renders stars, sky, hot pixels and cosmic rays (`obsctl.simulators.render`);
a classifier also needs galaxies, satellite trails, saturated stars with their bleed columns
and diffraction spikes, and it needs to know which pixel belongs to which kind of object.
`render_labelled_frame` draws all of them on a small calibrated frame (bias removed, dark
subtracted with the hot pixels' residuals left, sky still on it: what the photometry stage
sees) and returns a label image that names the object dominating each pixel.

The frames cover what real ones show: crowded fields with close groups of bright stars,
Moffat PSFs with wings down to beta = 2, some slightly elliptical, comatic or with a faint
halo, undersampled ones, saturated stars that bleed (CCD) or just clip (CMOS), galaxies from
one to eight PSF FWHM in half-light radius, a sky with a gradient and vignetting, and for
about a third of the frames the green plane of a colour (Bayer) sensor, demosaiced by
`obsctl.processing.colour.demosaic` as the pipeline does (half its pixels interpolated, so
the noise is spatially correlated, and hits on red or blue pixels gone).

Labels come from the light each kind of object puts in a pixel (before noise): a pixel is
labelled with the kind that puts the most light there, among the kinds whose core covers it
(a disk of 0.75 FWHM for a star, a cosmic ray's pixels grown by one, ...) or whose light there
exceeds twice the sky's noise. Where the runner-up kind puts more than half as much light there,
the pixel is `LABEL_CONFLICT` in `LabelledFrame.labels` (left out of training), while
`LabelledFrame.dominant` keeps the leader (what a test counts as the truth). Pixels of no
object are `LABEL_NONE`: a detection there is a noise peak. Objects of one kind never
conflict: a blend of stars is a star.

Everything is in electrons with a gain of 1 e-/ADU, so ADU and electrons coincide.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import binary_dilation, distance_transform_edt
from scipy.signal import fftconvolve

from obsctl.processing.colour import demosaic
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
"""No object dominates the pixel (sky): a detection here is a noise peak."""
LABEL_CONFLICT = -2
"""Objects of different kinds put comparable light here: a detection has no single class."""

_N_KINDS = 5
#: The runner-up kind must put less than this share of the leader's light in a pixel for
#: the pixel to have a single class.
_CONFLICT_RATIO = 0.5
#: Beyond its core, an object claims the pixels where its light exceeds this many sigma of
#: the sky's noise (a detection in a bright star's wing is that star's).
_HALO_NSIGMA = 2.0
_STREAM = 0x1ABE1  # keeps these draws apart from the camera simulator's streams


@dataclass(frozen=True)
class LabelledFrame:
    """A calibrated synthetic frame with the truth of every pixel.

    Attributes
    ----------
    image : numpy.ndarray of float32
        Calibrated pixels (electrons = ADU), sky included, shape ``(size, size)``, or one
        side longer by an unexposed band.
    labels : numpy.ndarray of int8
        The class dominating each pixel (``LABEL_*``), `LABEL_CONFLICT` where two kinds
        put comparable light.
    hot_map : numpy.ndarray of bool
        The hot pixels a master dark would reveal (True = hot), including those whose
        residual is lost in the noise (on a colour frame: of the raw mosaic).
    fwhm_px : float
        FWHM of the Moffat core of the PSF (pixel), before any distortion.
    beta : float
        Moffat beta of the PSF.
    read_noise_e : float
        Read noise (electrons).
    sky_e : float
        Mean sky level (electrons per pixel).
    saturation_e : float
        Level at which pixels saturate (electrons = ADU).
    galaxy_re_fwhm : numpy.ndarray of float32
        Per pixel, the half-light radius (in PSF FWHM) of the galaxy putting the most light
        there, else NaN.
    dominant : numpy.ndarray of int8
        Like `labels` but never `LABEL_CONFLICT`: the kind putting the most light there.
    bayer : str or None
        The Bayer pattern when the image is the green plane of a colour mosaic.
    psf_distorted : bool
        Whether the Moffat PSF was made elliptical, comatic or given a halo.
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
    dominant: NDArray[np.int8]
    bayer: str | None = None
    psf_distorted: bool = False


class _Painter:
    """Marks the cores of objects, per kind; the light decides between kinds later."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.cores = np.zeros((_N_KINDS, *shape), dtype=bool)

    def paint(self, rows: NDArray[np.int64], cols: NDArray[np.int64], label: int) -> None:
        ny, nx = self.cores.shape[1:]
        inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
        self.cores[label, rows[inside], cols[inside]] = True

    def disk(self, x: float, y: float, radius: float, label: int) -> None:
        r = math.ceil(radius)
        oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
        cy, cx = round(y), round(x)
        keep = (oy + cy - y) ** 2 + (ox + cx - x) ** 2 <= radius**2
        self.paint((oy[keep] + cy).astype(np.int64), (ox[keep] + cx).astype(np.int64), label)

    def segment(
        self, x0: float, y0: float, x1: float, y1: float, radius: float, label: int
    ) -> None:
        ny, nx = self.cores.shape[1:]
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

    def labels(
        self, light: NDArray[np.float32], noise: NDArray[np.float32]
    ) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
        """Return (labels with conflicts, dominant kind) from each kind's light ``[5, ny, nx]``."""
        candidate = self.cores | (light > _HALO_NSIGMA * noise[None])
        ranked = np.where(candidate, light, np.float32(-1.0))
        leader = np.argmax(ranked, axis=0)
        top2 = -np.partition(-ranked, 1, axis=0)[:2]
        anything = candidate.any(axis=0)
        dominant = np.where(anything, leader, LABEL_NONE).astype(np.int8)
        clash = anything & (top2[1] >= 0.0) & (top2[1] >= _CONFLICT_RATIO * top2[0])
        labels = np.where(clash, LABEL_CONFLICT, dominant).astype(np.int8)
        return labels, dominant


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
    n_stars: int | None = None,
    n_galaxies: int = 16,
    n_cosmic_rays: int = 14,
    n_hot_pixels: int = 12,
    trails_mean: float = 8.0,
    saturated_stars: tuple[int, int] = (0, 3),
    fwhm_range_px: tuple[float, float] = (1.4, 5.0),
    beta_range: tuple[float, float] = (2.0, 5.0),
    bayer: bool | None = None,
    distorted_psf: bool | None = None,
) -> LabelledFrame:
    """Render one labelled calibrated frame.

    Stars (log-uniform 30 to 400 per frame unless given) get aperture S/N log-uniform from 3 to
    3000; one in five has a companion 1.2-4 FWHM away, and one in ten heads a group of two to
    five bright stars (S/N 30-3000) within 1-5 FWHM of it, all labelled star; stars and galaxies
    may sit up to 2 px beyond the edge. The PSF is a Moffat profile (FWHM uniform in
    `fwhm_range_px`, beta in `beta_range`); in half the frames (unless `distorted_psf` says)
    it is convolved with a kernel that makes it elliptical (up to ~0.2), comatic (up to 20 %
    of the light in a lobe 0.3-0.8 FWHM off centre) and gives it a faint halo (up to 5 %).
    Galaxies (Sersic index 0.5-4, axis ratio 0.3-1, half-light radius 1-8 PSF FWHM, convolved
    with the PSF) S/N 5 to 2000; cosmic rays (single pixels, small blobs and straight tracks
    2-20 px long) and hot-pixel residuals both deposit 80-20000 e- (log-uniform), so only the
    hot-pixel map tells them apart; trails are PSF-wide straight segments 10-200 px long at
    1-60 sigma per pixel; saturated stars peak at 2-60 times the saturation level, and in
    three frames out of five bleed along their column (a CCD; otherwise they clip, like a
    CMOS sensor), in half the frames with four diffraction spikes. The sky has a gradient of
    up to +-15 % across the frame and up to 15 % vignetting; one frame in three ends in a band
    of 4-24 unexposed rows or columns (read noise only, appended to the frame, which is then
    not square), and the 8-24 exposed pixels before it are artifact where no object
    outshines one sigma. In about a third of the frames
    (unless `bayer` says) the frame is the raw mosaic of a colour sensor (all its pixels see
    the same light), and the image returned is its demosaiced green plane.

    Parameters
    ----------
    seed : int
        Seed of everything drawn; equal seeds give equal frames.
    size : int, optional
        Frame side (pixel), before any unexposed band.
    n_stars : int, optional
        Isolated stars before companions and groups; drawn when not given.
    n_galaxies, n_cosmic_rays, n_hot_pixels : int, optional
        Objects of each kind (placed uniformly, overlaps allowed).
    trails_mean : float, optional
        Mean number of trail segments (Poisson).
    saturated_stars : tuple of int, optional
        Inclusive range of the number of saturated stars.
    fwhm_range_px : tuple of float, optional
        Range of the Moffat FWHM (pixel), drawn uniformly.
    beta_range : tuple of float, optional
        Range of the Moffat beta, drawn uniformly.
    bayer : bool, optional
        Whether the frame is the green plane of a colour mosaic; drawn when not given.
    distorted_psf : bool, optional
        Whether the PSF is distorted (ellipticity, coma, halo); drawn when not given.

    Returns
    -------
    LabelledFrame
        The frame and its truth.
    """
    rng = np.random.default_rng([seed, _STREAM])
    shape = (size, size)
    fwhm = float(rng.uniform(*fwhm_range_px))
    beta = float(rng.uniform(*beta_range))
    sky = float(_log_uniform(rng, 20.0, 3000.0, 1)[0])
    read_noise = float(rng.uniform(2.0, 10.0))
    saturation = float(rng.uniform(30000.0, 65000.0))
    # Drawn always, so that the options change nothing else in the frame.
    star_count = round(float(_log_uniform(rng, 30.0, 400.0, 1)[0]))
    is_bayer = bool(rng.random() < 0.35) if bayer is None else bayer
    pattern = ("RGGB", "BGGR", "GRBG", "GBRG")[int(rng.integers(0, 4))]
    is_distorted = bool(rng.random() < 0.5) if distorted_psf is None else distorted_psf
    kernel = _distortion_kernel(rng, fwhm) if is_distorted else None
    bleeds = bool(rng.random() < 0.6)
    spikes = bool(rng.random() < 0.5)
    n_stars = star_count if n_stars is None else n_stars
    var_pix = sky + read_noise**2
    sigma = math.sqrt(var_pix)
    ap_pix = math.pi * (1.5 * fwhm) ** 2

    stars = np.zeros(shape, dtype=np.float32)
    galaxies = np.zeros(shape, dtype=np.float32)
    artifacts = np.zeros(shape, dtype=np.float32)
    painter = _Painter(shape)
    re_map = np.full(shape, np.nan, dtype=np.float32)
    brightest_galaxy = np.zeros(shape, dtype=np.float32)

    def uniform_xy(count: int, margin: float = 2.0) -> tuple[NDArray[np.float64], ...]:
        x = rng.uniform(margin, size - 1 - margin, count)
        y = rng.uniform(margin, size - 1 - margin, count)
        return x, y

    # Stars, some cut by the frame's edge, close companions and groups (blends are stars).
    sx, sy = uniform_xy(n_stars, margin=-2.0)
    s_snr = _log_uniform(rng, 3.0, 3000.0, n_stars)
    n_close = n_stars // 5
    host = rng.integers(0, n_stars, n_close)
    sep_px = rng.uniform(1.2, 4.0, n_close) * fwhm
    pair_angle = rng.uniform(0.0, 2.0 * math.pi, n_close)
    xs = [sx, sx[host] + sep_px * np.cos(pair_angle)]
    ys = [sy, sy[host] + sep_px * np.sin(pair_angle)]
    snrs = [s_snr, _log_uniform(rng, 3.0, 3000.0, n_close)]
    for _ in range(max(1, n_stars // 10)):
        members = int(rng.integers(2, 6))
        gx0, gy0 = (float(v[0]) for v in uniform_xy(1))
        dist = rng.uniform(1.0, 5.0, members) * fwhm
        dist[0] = 0.0
        g_angle = rng.uniform(0.0, 2.0 * math.pi, members)
        xs.append(gx0 + dist * np.cos(g_angle))
        ys.append(gy0 + dist * np.sin(g_angle))
        snrs.append(_log_uniform(rng, 30.0, 3000.0, members))
    sx, sy = np.concatenate(xs), np.concatenate(ys)
    s_flux = _flux_for_snr(np.concatenate(snrs), ap_pix, var_pix)
    add_stars(stars, sx, sy, s_flux, fwhm_px=fwhm, beta=beta)
    for x, y in zip(sx, sy, strict=True):
        painter.disk(float(x), float(y), max(1.5, 0.75 * fwhm), LABEL_STAR)

    # Galaxies: Sersic profiles convolved with the PSF.
    psf_r = stamp_radius_px(fwhm, beta)
    psf = moffat_stamp(0.0, 0.0, fwhm_px=fwhm, beta=beta, radius_px=psf_r, oversample=3)
    gx, gy = uniform_xy(n_galaxies, margin=-2.0)
    for x, y in zip(gx, gy, strict=True):
        re_fwhm = float(_log_uniform(rng, 1.0, 8.0, 1)[0])
        re_px = re_fwhm * fwhm
        n = float(rng.uniform(0.5, 4.0))
        q = float(rng.uniform(0.3, 1.0))
        angle = float(rng.uniform(0.0, math.pi))
        radius = int(min(72, math.ceil(3.0 * re_px + 2 * fwhm)))
        cx, cy = round(x), round(y)
        model = sersic_image(
            radius, x - cx, y - cy, re_px=re_px, n=n, axis_ratio=q, angle_rad=angle
        )
        conv = np.clip(fftconvolve(model, psf, mode="same"), 0.0, None)
        g_pix = math.pi * max(1.5 * fwhm, re_px) ** 2
        flux = float(_flux_for_snr(_log_uniform(rng, 5.0, 2000.0, 1), g_pix, var_pix)[0])
        one = np.zeros(shape, dtype=np.float32)
        _add_stamp(one, conv * flux, cx, cy)
        galaxies += one
        core = max(2.0, 0.6 * re_px * math.sqrt(q))
        painter.disk(float(x), float(y), core, LABEL_GALAXY)
        brighter = one > brightest_galaxy
        re_map[brighter] = re_fwhm
        brightest_galaxy = np.maximum(brightest_galaxy, one)

    # Saturated stars, with diffraction spikes on some telescopes.
    n_sat = int(rng.integers(saturated_stars[0], saturated_stars[1] + 1))
    bleed_cols: list[tuple[int, int, float]] = []
    for _ in range(n_sat):
        x, y = (float(v[0]) for v in uniform_xy(1, margin=10.0))
        peak_fraction = moffat_stamp(0.0, 0.0, fwhm_px=fwhm, beta=beta, radius_px=0, oversample=5)
        flux = float(_log_uniform(rng, 2.0, 60.0, 1)[0]) * saturation / float(peak_fraction[0, 0])
        add_stars(stars, np.array([x]), np.array([y]), np.array([flux]), fwhm_px=fwhm, beta=beta)
        spike_len = min(60.0, 4.0 * fwhm * math.log10(flux / saturation * 10.0) + 6.0 * fwhm)
        spike_flux = flux * float(rng.uniform(1e-3, 1e-2))
        for ang in (0.0, 0.5 * math.pi, math.pi, 1.5 * math.pi) if spikes else ():
            ex, ey = x + spike_len * math.cos(ang), y + spike_len * math.sin(ang)
            _add_line(artifacts, x, y, ex, ey, spike_flux, fwhm, beta, taper=True)
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
        _add_line(artifacts, mx - dx, my - dy, mx + dx, my + dy, per_px * length, fwhm, beta)
        painter.segment(mx - dx, my - dy, mx + dx, my + dy, max(1.5, 0.7 * fwhm), LABEL_ARTIFACT)

    if kernel is not None:  # everything the optics imaged gets the distorted PSF
        for light in (stars, galaxies, artifacts):
            light[:] = np.clip(fftconvolve(light, kernel, mode="same"), 0.0, None)

    # A sky with a gradient (moonlight, twilight) and vignetting.
    yy, xx = (np.mgrid[0:size, 0:size] - (size - 1) / 2.0) / size
    gx_, gy_ = rng.uniform(-0.3, 0.3, 2)
    vignetting = float(rng.uniform(0.0, 0.3))
    sky_map = sky * np.clip(1.0 + gx_ * xx + gy_ * yy - vignetting * (xx**2 + yy**2), 0.3, None)
    sky_map = sky_map.astype(np.float32)

    # Photon and read noise on the light plus sky.
    expected = stars + galaxies + artifacts + sky_map
    image = expected + rng.normal(0.0, 1.0, shape).astype(np.float32) * np.sqrt(
        np.maximum(expected, 0.0) + read_noise**2
    ).astype(np.float32)

    # Cosmic rays: charge added after the optics, so sharper than any PSF.
    cosmic = np.zeros(shape, dtype=np.float32)
    for _ in range(n_cosmic_rays):
        rows, cols = _cosmic_ray_pixels(rng, size)
        energy = float(_log_uniform(rng, 80.0, 20000.0, 1)[0])
        share = rng.uniform(0.6, 1.4, rows.size)
        inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        np.add.at(cosmic, (rows[inside], cols[inside]), (energy * share / share.sum())[inside])
    image += cosmic

    # Hot pixels: the master dark knows them all; only some leave a residual above the noise
    # (a mis-scaled dark, or no dark at all), the rest are sprinkled as map-only distractors.
    hot = np.zeros(shape, dtype=np.float32)
    hot_map = rng.random(shape) < float(rng.uniform(0.0005, 0.004))
    hy = rng.integers(1, size - 1, n_hot_pixels)
    hx = rng.integers(1, size - 1, n_hot_pixels)
    residual = _log_uniform(rng, 80.0, 20000.0, n_hot_pixels)
    for y, x, r in zip(hy, hx, residual, strict=True):
        hot[y, x] += np.float32(r + rng.normal(0.0, math.sqrt(r)))
        hot_map[y, x] = True
        if rng.random() < 0.2:  # a charge-transfer tail into the next row
            hot[y + 1, x] += np.float32(r * rng.uniform(0.05, 0.3))
    image += hot

    # Saturation: full wells spill along their column (a CCD bleeds), then everything clips.
    if bleeds:
        before = image.copy()
        for cx, cy, core in bleed_cols:
            _bleed(image, cx, cy, saturation, painter, fwhm, core)
        artifacts += np.clip(image - before, 0.0, None)
    np.minimum(image, np.float32(saturation), out=image)

    lights = np.stack([stars, galaxies, cosmic, hot, artifacts])  # indexed by LABEL_*
    if is_bayer:
        image = demosaic(image, pattern)["G"]
        lights = np.stack([demosaic(light, pattern)["G"] for light in lights])
    # A hit's pixels grown by one (on a colour frame, where the green plane still shows it).
    grow = np.ones((3, 3), dtype=bool)
    painter.cores[LABEL_COSMIC_RAY] |= binary_dilation(lights[LABEL_COSMIC_RAY] > 0, grow)
    painter.cores[LABEL_HOT_PIXEL] |= binary_dilation(
        lights[LABEL_HOT_PIXEL] > 0, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    )
    # Some frames end in a band of unexposed rows or columns (masked or shadowed pixels left
    # in the frame): read noise only. When the band fills the last, partial box of the
    # background mesh, the background sags towards the step and the sky before it is
    # detected as broad faint sources: artifacts (an object brighter than one sigma there
    # stays what it is).
    band = _unexposed_band(np.random.default_rng([seed, _STREAM, 1]))
    if band is not None:
        axis, width, margin = band
        near = np.zeros(shape, dtype=bool)
        if axis == 0:
            near[-margin:, :] = True
        else:
            near[:, -margin:] = True
        painter.cores[LABEL_ARTIFACT] |= near
        lights[LABEL_ARTIFACT][near] += np.float32(sigma)
    noise = np.sqrt(sky_map + np.float32(read_noise**2)).astype(np.float32)
    labels, dominant = painter.labels(lights, noise)
    if band is not None:
        axis, width, margin = band
        dead_shape = (width, size) if axis == 0 else (size, width)
        dead = rng.normal(0.0, read_noise, dead_shape).astype(np.float32)
        image = np.concatenate([image, dead], axis=axis)
        artifact = np.full(dead_shape, LABEL_ARTIFACT, dtype=np.int8)
        labels = np.concatenate([labels, artifact], axis=axis)
        dominant = np.concatenate([dominant, artifact], axis=axis)
        hot_map = np.concatenate([hot_map, np.zeros(dead_shape, dtype=bool)], axis=axis)
        re_map = np.concatenate([re_map, np.full(dead_shape, np.nan, np.float32)], axis=axis)
    gaps = np.isnan(re_map)
    if gaps.any() and not gaps.all():  # light spread by the PSF distortion or the demosaicing
        nearest = distance_transform_edt(gaps, return_distances=False, return_indices=True)
        re_map = re_map[nearest[0], nearest[1]]
    re_map[dominant != LABEL_GALAXY] = np.nan

    return LabelledFrame(
        image=np.ascontiguousarray(image, dtype=np.float32),
        labels=labels,
        hot_map=hot_map,
        fwhm_px=fwhm,
        beta=beta,
        read_noise_e=read_noise,
        sky_e=sky,
        saturation_e=saturation,
        galaxy_re_fwhm=re_map,
        dominant=dominant,
        bayer=pattern if is_bayer else None,
        psf_distorted=is_distorted,
    )


def _unexposed_band(rng: np.random.Generator) -> tuple[int, int, int] | None:
    """Return (axis, width, margin) of the unexposed band of one frame in three, or None.

    The band is appended after the last row (axis 0) or column (axis 1): 4-24 pixels, so
    that it makes the last box of a 64-pixel background mesh a partial box of dead pixels;
    the margin is the 8-24 exposed pixels before it.
    """
    if rng.random() >= 1.0 / 3.0:
        return None
    return int(rng.integers(0, 2)), int(rng.integers(4, 25)), int(rng.integers(8, 25))


def _distortion_kernel(rng: np.random.Generator, fwhm: float) -> NDArray[np.float64]:
    """Return a unit-sum kernel that makes a round PSF elliptical and comatic, with a halo."""
    major = float(rng.uniform(0.05, 0.35)) * fwhm / 2.355  # sigma along the elongation (px)
    minor = 0.05 * fwhm / 2.355
    theta = float(rng.uniform(0.0, math.pi))
    coma_w = float(rng.uniform(0.0, 0.2))
    coma_d = float(rng.uniform(0.3, 0.8)) * fwhm
    coma_phi = float(rng.uniform(0.0, 2.0 * math.pi))
    halo_w = float(rng.uniform(0.0, 0.05))
    halo_a = float(rng.uniform(1.0, 3.0)) * fwhm
    r = min(30, math.ceil(4.0 * halo_a))
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    grid = (np.arange(-r, r + 1)[:, None] + sub[None, :]).ravel()
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = xx * c + yy * s, -xx * s + yy * c
    core = np.exp(-0.5 * ((u / major) ** 2 + (v / minor) ** 2))
    lobe_sigma = 0.4 * fwhm / 2.355
    lobe = np.exp(
        -0.5
        * ((xx - coma_d * math.cos(coma_phi)) ** 2 + (yy - coma_d * math.sin(coma_phi)) ** 2)
        / lobe_sigma**2
    )
    halo = (1.0 + (xx**2 + yy**2) / halo_a**2) ** -2.5
    side = 2 * r + 1
    parts = []
    for part in (core, lobe, halo):
        pixels = part.reshape(side, 5, side, 5).mean(axis=(1, 3))
        parts.append(pixels / pixels.sum())
    kernel: NDArray[np.float64] = (
        (1.0 - coma_w - halo_w) * parts[0] + coma_w * parts[1] + halo_w * parts[2]
    )
    return kernel


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
