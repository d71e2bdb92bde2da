"""Frame-quality metrics: seeing (FWHM, HFR), ellipticity, star count, background, depth.

`frame_metrics` summarises a `obsctl.processing.photometry.measure_sources` catalog;
`limiting_magnitude` measures the depth of a frame by injecting copies of its own stars at
known magnitudes and recovering them with the same detector; `fit_completeness` turns
recovered/injected counts into the magnitude of a given completeness.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sep
from numpy.typing import ArrayLike, NDArray

from obsctl.processing.photometry import (
    FLAG_SHARP,
    BackgroundInfo,
    detect_sources,
)

__all__ = [
    "fit_completeness",
    "frame_metrics",
    "limiting_magnitude",
    "psf_stars",
]

# PSF stars: S/N of 50 or more (below it noise widens the core fit and fakes ellipticity),
# relaxed to 20 when fewer than _PSF_MIN_STARS are that bright.
_PSF_MIN_SNR = 50.0
_PSF_FALLBACK_SNR = 20.0
_PSF_MIN_STARS = 5
_CLIP_SIGMA = 3.0
_MAD_TO_SIGMA = 1.4826

# Templates for injection: the brightest clean, isolated stars, copied at integer offsets
# so that their pixel phase (and the true PSF) travels with them.
_TEMPLATE_MIN_SNR = 50.0
_TEMPLATE_RADIUS_FWHM = 4.0  # a beta-3 Moffat loses 0.3 % outside 4 FWHM
_MIN_SPACING_FWHM = 5.0  # between injected stars, and from the edge of a cutout
_AVOID_FWHM = 3.0  # injected stars keep this far (plus the isophotal radius) from sources
_GRID_HALF_WIDTH_MAG = 1.2
_GRID_STEP_MAG = 0.1
_MAX_RECENTRES = 3
_PLACEMENT_TRIES = 30  # random candidates per wanted star before a cutout counts as full


# ---------------------------------------------------------------------------- seeing etc.


def psf_stars(catalog: NDArray[Any], *, min_snr: float = _PSF_MIN_SNR) -> NDArray[np.bool_]:
    """Select the clean, isolated point sources that define the PSF.

    Parameters
    ----------
    catalog : numpy.ndarray
        A `obsctl.processing.photometry.measure_sources` catalog.
    min_snr : float, optional
        Minimum main-aperture signal-to-noise ratio. Below ~50, noise widens the core fit
        and fakes ellipticity.

    Returns
    -------
    numpy.ndarray of bool
        True for sources with no flag at all (unsaturated, away from the edges, not
        blended or crowded, shape fitted), ``snr >= min_snr`` and a FWHM within 3 sigma
        (robust) of the median of such sources, which removes galaxies and cosmic rays.
    """
    fwhm = catalog["fwhm_px"]
    candidate = (catalog["flags"] == 0) & (catalog["snr"] >= min_snr) & np.isfinite(fwhm)
    candidate &= np.isfinite(catalog["hfr_px"])
    for _ in range(5):
        if np.count_nonzero(candidate) < 3:
            break
        values = fwhm[candidate]
        centre = float(np.median(values))
        spread = _MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
        keep = candidate & (np.abs(fwhm - centre) <= _CLIP_SIGMA * max(spread, 0.01 * centre))
        if np.array_equal(keep, candidate):
            break
        candidate = keep
    result: NDArray[np.bool_] = np.asarray(candidate, dtype=bool)
    return result


def frame_metrics(
    catalog: NDArray[Any],
    background_info: BackgroundInfo,
    *,
    pixel_scale_arcsec: float | None,
) -> dict[str, float]:
    """Summarise a frame's image quality.

    Parameters
    ----------
    catalog : numpy.ndarray
        A `obsctl.processing.photometry.measure_sources` catalog.
    background_info : BackgroundInfo
        The background statistics that came with it.
    pixel_scale_arcsec : float or None
        Pixel scale (arcsec per pixel, binned); None leaves the arcsec values NaN.

    Returns
    -------
    dict of str to float
        - ``fwhm_px``, ``fwhm_arcsec``: median Gaussian-core FWHM of the PSF stars
          (`psf_stars` with S/N >= 50, or >= 20 when fewer than 5 are that bright); it
          reads 4-8 % above the true FWHM of Moffat stars (beta 4.5-3) and up to ~17 %
          above it for undersampled ones (FWHM 1.5 px); see
          `obsctl.processing.photometry.measure_sources`.
        - ``hfr_px``, ``hfr_arcsec``: their median half-flux radius.
        - ``ellipticity``: their median ``1 - b/a``.
        - ``psf_star_count``: how many PSF stars there were.
        - ``star_count``: all detections except cosmic-ray-sharp ones.
        - ``background``, ``background_rms``: the global background level and noise (ADU
          per pixel).

        The PSF values are NaN when there is no PSF star.
    """
    selected = psf_stars(catalog)
    if np.count_nonzero(selected) < _PSF_MIN_STARS:
        selected = psf_stars(catalog, min_snr=_PSF_FALLBACK_SNR)
    n_psf = int(np.count_nonzero(selected))

    def median(name: str) -> float:
        return float(np.median(catalog[name][selected])) if n_psf else math.nan

    fwhm_px = median("fwhm_px")
    hfr_px = median("hfr_px")
    scale = math.nan if pixel_scale_arcsec is None else float(pixel_scale_arcsec)
    return {
        "fwhm_px": fwhm_px,
        "fwhm_arcsec": fwhm_px * scale,
        "hfr_px": hfr_px,
        "hfr_arcsec": hfr_px * scale,
        "ellipticity": median("ellipticity"),
        "psf_star_count": float(n_psf),
        "star_count": float(np.count_nonzero((catalog["flags"] & FLAG_SHARP) == 0)),
        "background": float(background_info.level_adu),
        "background_rms": float(background_info.rms_adu),
    }


# -------------------------------------------------------------------------- completeness


def fit_completeness(
    mags: ArrayLike,
    recovered: ArrayLike,
    injected: ArrayLike,
    *,
    level: float = 0.5,
) -> float:
    """Return the magnitude at which a logistic completeness curve crosses `level`.

    The curve ``p(m) = 1 / (1 + exp((m - m50) / w))`` is fitted by maximum binomial
    likelihood on a grid of ``m50`` (0.005 mag steps) and ``w`` (0.02-1 mag), which is robust
    with a handful of trials per magnitude where interpolating noisy fractions is not.

    Parameters
    ----------
    mags : array_like
        Magnitudes of the trials (any repeats are fine).
    recovered, injected : array_like
        Recovered and injected counts per entry of `mags`.
    level : float, optional
        Completeness of interest, in (0, 1).

    Returns
    -------
    float
        The magnitude (mag) where the fitted completeness equals `level`; NaN without any
        trial.

    Raises
    ------
    ValueError
        If `level` is outside (0, 1) or the array lengths differ.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be within (0, 1), got {level}")
    m = np.asarray(mags, dtype=np.float64).ravel()
    k = np.asarray(recovered, dtype=np.float64).ravel()
    n = np.asarray(injected, dtype=np.float64).ravel()
    if not m.size == k.size == n.size:
        raise ValueError("mags, recovered and injected must have the same length")
    use = n > 0
    m, k, n = m[use], k[use], n[use]
    if m.size == 0:
        return math.nan
    centres = np.arange(m.min() - 1.0, m.max() + 1.0, 0.005)
    widths = np.geomspace(0.02, 1.0, 40)
    z = (m[None, None, :] - centres[:, None, None]) / widths[None, :, None]
    # log p and log(1 - p) of the logistic, written to stay finite for large |z|.
    log_p = -np.logaddexp(0.0, z)
    log_q = -np.logaddexp(0.0, -z)
    loglik = (k * log_p + (n - k) * log_q).sum(axis=2)
    i, j = np.unravel_index(int(np.argmax(loglik)), loglik.shape)
    return float(centres[i] + widths[j] * math.log(1.0 / level - 1.0))


def _gaussian_template(fwhm_px: float, radius: int) -> NDArray[np.float64]:
    """Return a pixel-integrated (5 x 5 oversampled) unit-flux Gaussian on a centred stamp."""
    sigma = fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    grid = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel()
    g = np.exp(-0.5 * (grid / sigma) ** 2)
    size = 2 * radius + 1
    stamp = (g[:, None] * g[None, :]).reshape(size, 5, size, 5).mean(axis=(1, 3))
    result: NDArray[np.float64] = stamp / stamp.sum()
    return result


def _templates(
    data: NDArray[Any],
    catalog: NDArray[Any],
    *,
    fwhm_px: float,
    radius: int,
    aperture_radius_px: float,
    max_templates: int,
) -> list[tuple[NDArray[np.float64], float, float]]:
    """Return stamps of bright isolated stars, scaled to unit main-aperture flux.

    Each comes background-subtracted, with the star's offset (x, y) from the stamp's centre
    pixel. A Gaussian model stands in when the frame has no suitable star.
    """
    ny, nx = data.shape
    x = np.rint(catalog["x"]).astype(np.int64)
    y = np.rint(catalog["y"]).astype(np.int64)
    inside = (x >= radius) & (x < nx - radius) & (y >= radius) & (y < ny - radius)
    good = inside & (catalog["flags"] == 0) & (catalog["snr"] >= _TEMPLATE_MIN_SNR)
    good &= catalog["flux"] > 0
    stamps: list[tuple[NDArray[np.float64], float, float]] = []
    for i in np.flatnonzero(good)[np.argsort(-catalog["snr"][good])]:
        if len(stamps) >= max_templates:
            break
        # Isolated: no other detection inside the stamp.
        near = (np.abs(catalog["x"] - x[i]) <= radius + 1) & (
            np.abs(catalog["y"] - y[i]) <= radius + 1
        )
        if np.count_nonzero(near) > 1:
            continue
        stamp = data[y[i] - radius : y[i] + radius + 1, x[i] - radius : x[i] + radius + 1]
        stamp = stamp.astype(np.float64) - float(catalog["background"][i])
        offset_x = float(catalog["x"][i] - x[i])
        offset_y = float(catalog["y"][i] - y[i])
        stamps.append((stamp / float(catalog["flux"][i]), offset_x, offset_y))
    if not stamps:
        model = _gaussian_template(fwhm_px, radius)
        c = float(radius)
        fraction, _, _ = sep.sum_circle(
            np.ascontiguousarray(model), [c], [c], aperture_radius_px, subpix=0
        )
        stamps.append((model / float(fraction[0]), 0.0, 0.0))
    return stamps


def limiting_magnitude(
    data: ArrayLike,
    catalog: NDArray[Any],
    *,
    zero_point: float,
    exposure_s: float,
    fwhm_px: float,
    gain_e_per_adu: float = 1.0,
    rms_adu: float | None = None,
    aperture_radius_px: float | None = None,
    mask: ArrayLike | None = None,
    seed: int | np.random.Generator = 0,
    mags: ArrayLike | None = None,
    n_per_mag: int = 16,
    completeness: float = 0.5,
    cutout_px: int = 256,
    max_templates: int = 20,
    detect_sigma: float = 3.0,
    minarea: int = 5,
    back_size: int = 64,
    back_subsample: int = 2,
    deblend_nthresh: int = 32,
    deblend_cont: float = 0.005,
) -> float:
    """Measure the magnitude at which a frame's detection completeness drops to 50 %.

    Artificial stars at known magnitudes are added to copies of sub-images of the frame, away
    from the catalog's sources and from each other, and searched for with the same detector
    as the catalog (`obsctl.processing.photometry.detect_sources` with the same settings).
    The stars are scaled copies of the frame's own bright isolated stars, so their profile
    is the real PSF whatever its shape; their main-aperture flux is set from the magnitude
    and the zero point, so the result is on the same magnitude scale as the calibrated
    catalog. A logistic curve fitted to the recovered fraction (`fit_completeness`) gives
    the answer.

    Parameters
    ----------
    data : array_like
        The calibrated image the catalog was measured on (ADU), shape ``(ny, nx)``.
    catalog : numpy.ndarray
        Its `obsctl.processing.photometry.measure_sources` catalog.
    zero_point : float
        Zero point (mag) of the main-aperture flux in electrons per second:
        ``mag = zero_point - 2.5 log10(flux * gain / exposure_s)``, as in
        `obsctl.processing.zeropoint`.
    exposure_s : float
        Exposure time (s).
    fwhm_px : float
        The frame's FWHM (pixel): spacing, stamp size and the match radius scale with it.
    gain_e_per_adu : float, optional
        Conversion gain (electrons per ADU) of `data`.
    rms_adu : float, optional
        Background rms (ADU) the catalog's detection threshold used
        (``BackgroundInfo.rms_adu``); by default each sub-image's own.
    aperture_radius_px : float, optional
        Main aperture radius (pixel); only used when the frame has no star to copy and a
        Gaussian model is injected instead. Default 1.5 FWHM.
    mask : array_like of bool, optional
        Bad pixels (True = bad); no star is injected on one.
    seed : int or numpy.random.Generator, optional
        Randomness of positions and sub-images.
    mags : array_like, optional
        Magnitudes to inject, each `n_per_mag` times. By default a grid 0.1 mag apart,
        +-1.2 mag around a first guess (aperture S/N of 5), re-centred on the result when
        the 50 % point falls near its end.
    n_per_mag : int, optional
        Stars injected per magnitude.
    completeness : float, optional
        Completeness level to report, in (0, 1).
    cutout_px : int, optional
        Side of the sub-images (pixel): small sub-images keep the cost under 0.1 s per
        frame whatever the frame size.
    max_templates : int, optional
        Number of the frame's stars used as templates.
    detect_sigma, minarea, back_size, back_subsample, deblend_nthresh, deblend_cont
        Detection settings; pass the ones the catalog was measured with.

    Returns
    -------
    float
        The limiting magnitude (mag) at the requested completeness; NaN when no star could
        be placed.

    Raises
    ------
    ValueError
        If an argument is out of range or the image is not two-dimensional.
    """
    image = np.asarray(data)
    if image.ndim != 2:
        raise ValueError(f"data must be a two-dimensional image, got shape {image.shape}")
    if not (exposure_s > 0.0 and fwhm_px > 0.0 and gain_e_per_adu > 0.0 and n_per_mag >= 1):
        raise ValueError("exposure_s, fwhm_px, gain_e_per_adu and n_per_mag must be positive")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bad = None if mask is None else np.asarray(mask, dtype=bool)
    ap_radius = 1.5 * fwhm_px if aperture_radius_px is None else float(aperture_radius_px)
    radius = max(3, math.ceil(_TEMPLATE_RADIUS_FWHM * fwhm_px))
    templates = _templates(
        image,
        catalog,
        fwhm_px=fwhm_px,
        radius=radius,
        aperture_radius_px=ap_radius,
        max_templates=max_templates,
    )
    detect = {
        "detect_sigma": detect_sigma,
        "minarea": minarea,
        "back_size": back_size,
        "back_subsample": back_subsample,
        "deblend_nthresh": deblend_nthresh,
        "deblend_cont": deblend_cont,
        "rms_adu": rms_adu,
    }

    def flux_adu(m: NDArray[np.float64]) -> NDArray[np.float64]:
        return exposure_s * 10.0 ** (-0.4 * (m - zero_point)) / gain_e_per_adu

    def run(grid: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        wanted = rng.permutation(np.repeat(grid, n_per_mag))
        return _inject_and_recover(
            image,
            bad,
            catalog,
            wanted,
            flux_adu(wanted),
            templates,
            rng=rng,
            radius=radius,
            fwhm_px=fwhm_px,
            cutout_px=cutout_px,
            detect=detect,
        )

    if mags is not None:
        grid = np.unique(np.asarray(mags, dtype=np.float64))
        placed, found = run(grid)
        return _completeness_mag(placed, found, completeness)

    noise = rms_adu if rms_adu is not None else _robust_rms(image)
    guess_flux = 5.0 * noise * math.sqrt(math.pi) * ap_radius * gain_e_per_adu / exposure_s
    centre = zero_point - 2.5 * math.log10(guess_flux)
    offsets = np.arange(-_GRID_HALF_WIDTH_MAG, _GRID_HALF_WIDTH_MAG + 1e-9, _GRID_STEP_MAG)
    all_placed: list[NDArray[np.float64]] = []
    all_found: list[NDArray[np.bool_]] = []
    result = math.nan
    for _ in range(_MAX_RECENTRES):
        grid = np.round(centre + offsets, 3)
        placed, found = run(grid)
        all_placed.append(placed)
        all_found.append(found)
        result = _completeness_mag(
            np.concatenate(all_placed), np.concatenate(all_found), completeness
        )
        if not math.isfinite(result):
            break
        margin = 2.0 * _GRID_STEP_MAG
        if grid[0] + margin <= result <= grid[-1] - margin:
            break
        centre = result
    return result


def _robust_rms(image: NDArray[Any]) -> float:
    """Background rms from a sparse pixel sample, when the caller gave none."""
    sample = image[:: max(1, image.shape[0] // 256), :: max(1, image.shape[1] // 256)]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    centre = float(np.median(sample))
    return _MAD_TO_SIGMA * float(np.median(np.abs(sample - centre)))


def _completeness_mag(placed: NDArray[np.float64], found: NDArray[np.bool_], level: float) -> float:
    if placed.size == 0:
        return math.nan
    grid, index = np.unique(placed, return_inverse=True)
    injected = np.bincount(index, minlength=grid.size)
    recovered = np.bincount(index, weights=found.astype(np.float64), minlength=grid.size)
    return fit_completeness(grid, recovered, injected, level=level)


def _place(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    margin: int,
    spacing: float,
    wanted: int,
    avoid_x: NDArray[np.float64],
    avoid_y: NDArray[np.float64],
    avoid_r: NDArray[np.float64],
    bad: NDArray[np.bool_] | None,
) -> list[tuple[int, int]]:
    """Draw up to `wanted` integer positions in a sub-image.

    They are `spacing` apart and clear of the sources (within `avoid_r` of them) and of bad
    pixels.
    """
    if height <= 2 * margin or width <= 2 * margin:
        return []
    capacity = max(1, round(0.5 * (height - 2 * margin) * (width - 2 * margin) / spacing**2))
    n = min(capacity, wanted)
    cy = rng.integers(margin, height - margin, _PLACEMENT_TRIES * n)
    cx = rng.integers(margin, width - margin, _PLACEMENT_TRIES * n)
    clear = np.ones(cy.size, dtype=bool)
    if avoid_x.size:
        d2 = (cx[:, None] - avoid_x[None, :]) ** 2 + (cy[:, None] - avoid_y[None, :]) ** 2
        clear &= ~np.any(d2 < avoid_r[None, :] ** 2, axis=1)
    if bad is not None:
        clear &= ~bad[cy, cx]
    positions: list[tuple[int, int]] = []
    # Greedy, in draw order; a point closer than `spacing` lies in one of the 3x3 grid cells
    # of side `spacing` around it, so only those are searched (not every earlier point).
    cells: dict[tuple[int, int], list[tuple[int, int]]] = {}
    min_d2 = spacing**2
    for py, px in zip(cy[clear].tolist(), cx[clear].tolist(), strict=True):
        gy, gx = int(py // spacing), int(px // spacing)
        near = (
            q for dy in (-1, 0, 1) for dx in (-1, 0, 1) for q in cells.get((gy + dy, gx + dx), ())
        )
        if all((px - qx) ** 2 + (py - qy) ** 2 >= min_d2 for qy, qx in near):
            positions.append((py, px))
            cells.setdefault((gy, gx), []).append((py, px))
            if len(positions) == n:
                break
    return positions


def _inject_and_recover(
    image: NDArray[Any],
    bad: NDArray[np.bool_] | None,
    catalog: NDArray[Any],
    mags: NDArray[np.float64],
    fluxes: NDArray[np.float64],
    templates: list[tuple[NDArray[np.float64], float, float]],
    *,
    rng: np.random.Generator,
    radius: int,
    fwhm_px: float,
    cutout_px: int,
    detect: dict[str, Any],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Inject the stars into as many sub-image copies as needed.

    Returns the magnitudes placed and whether each was recovered.
    """
    ny, nx = image.shape
    height, width = min(cutout_px, ny), min(cutout_px, nx)
    cells = [
        (y0, x0)
        for y0 in range(0, ny - height + 1, height)
        for x0 in range(0, nx - width + 1, width)
    ]
    order = rng.permutation(len(cells))
    spacing = _MIN_SPACING_FWHM * fwhm_px
    margin = max(radius, math.ceil(spacing / 2))
    match_radius = max(1.0, 0.5 * fwhm_px)
    avoid = _AVOID_FWHM * fwhm_px + np.sqrt(np.maximum(catalog["npix"], 0) / math.pi)
    reach = radius + (float(avoid.max()) if avoid.size else 0.0)

    placed_mags: list[float] = []
    recovered: list[bool] = []
    todo = 0
    empty_cutouts = 0
    visit = 0
    while todo < mags.size and empty_cutouts < len(cells):
        y0, x0 = cells[order[visit % len(cells)]]
        visit += 1
        near = (
            (catalog["x"] > x0 - reach) & (catalog["x"] < x0 + width + reach)
            & (catalog["y"] > y0 - reach) & (catalog["y"] < y0 + height + reach)
        )  # fmt: skip
        sx, sy, sr = catalog["x"][near] - x0, catalog["y"][near] - y0, avoid[near]
        positions = _place(
            rng,
            height=height,
            width=width,
            margin=margin,
            spacing=spacing,
            wanted=mags.size - todo,
            avoid_x=sx,
            avoid_y=sy,
            avoid_r=sr,
            bad=None if bad is None else bad[y0 : y0 + height, x0 : x0 + width],
        )
        if not positions:
            empty_cutouts += 1
            continue
        empty_cutouts = 0
        cut = image[y0 : y0 + height, x0 : x0 + width].astype(np.float32)
        truth_xy = np.empty((len(positions), 2))
        for k, (cy, cx) in enumerate(positions):
            template, offset_x, offset_y = templates[int(rng.integers(len(templates)))]
            stamp = (template * fluxes[todo + k]).astype(np.float32)
            cut[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1] += stamp
            truth_xy[k] = (cx + offset_x, cy + offset_y)
        cut_mask = None if bad is None else bad[y0 : y0 + height, x0 : x0 + width]
        objects = detect_sources(cut, mask=cut_mask, **detect).objects
        ox, oy = np.asarray(objects["x"]), np.asarray(objects["y"])
        for k in range(len(positions)):
            d2 = (ox - truth_xy[k, 0]) ** 2 + (oy - truth_xy[k, 1]) ** 2
            recovered.append(bool(d2.size and d2.min() <= match_radius**2))
            placed_mags.append(float(mags[todo + k]))
        todo += len(positions)
    return np.asarray(placed_mags), np.asarray(recovered, dtype=bool)
