"""PSF photometry in crowded simulated fields: obsctl.processing.psf against photutils.

Renders fields with the camera simulator at today's default star density (2500 per square
degree down to V 19.5, the `SimulatedSkyConfig` default) and at 5 times it, calibrates them
with the simulator's own truth, runs the photometry stage's `measure_sources`, then:

- obsctl: `build_psf_model` (Moffat, FWHM polynomial) and `psf_photometry`, fitting every
  source (with the residual search) or only the blended groups;
- photutils: an ePSF (`EPSFBuilder`, oversampling 4) from the 100 brightest clean isolated
  stars, and `PSFPhotometry` with a `SourceGrouper` fitting the blended groups only and
  every source, started from the SEP catalog (photutils only on the first repeat: its ePSF
  alone takes tens of seconds).

Accuracy is against the simulator's truth (``RenderResult.stars["flux_e"]``, the star's total
expected electrons): magnitude differences of matched S/N > 50 stars (catalog aperture S/N,
unsaturated, off the edge), median and robust scatter (1.4826 MAD), separately for isolated
stars, blended ones (another star 1-3 FWHM away, at most 3 mag fainter) and unresolved ones
(another star within 1 FWHM, at most 4 mag fainter: one source to any detector, so no
method measures the star alone). Aperture fluxes miss the PSF wings, a constant the zero point
absorbs, so for them "|d|<0.02" counts blended stars within 0.02 mag of the isolated median;
for PSF fluxes, of the truth. "sigma" is the blended stars' median error (mag) from the
method's own flux error: the noise floor of the scatter. Times are medians over repeats; the
machine is shared and noisy.

Usage: ``python bench/psf.py [--size 2048] [--repeats 3] [--no-photutils]``
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import sep

from obsctl.processing.photometry import FLAG_EDGE, FLAG_SATURATED, measure_sources
from obsctl.processing.psf import build_psf_model, group_sources, psf_photometry
from obsctl.simulators import scenes
from obsctl.simulators.render import column_bias, flat_response, render_exposure

GAIN = 1.5  # e-/ADU
READ_NOISE_E = 3.5
FULL_WELL_E = 50000.0
SATURATION_ADU = 0.97 * FULL_WELL_E / GAIN
PIXEL_SCALE = 0.97  # 800 mm focal length, 3.76 um pixels
SEEING = 2.2  # the SimulatedSkyConfig default: FWHM 2.27 px
FWHM_PX = SEEING / PIXEL_SCALE
ZERO_POINT = 21.0  # V giving 1 e-/s (SimulatedSkyConfig default)
SKY_E_S_PX = 10.0 ** (-0.4 * (20.5 - ZERO_POINT)) * PIXEL_SCALE**2  # 20.5 mag/arcsec^2
DEFAULT_DENSITY = 2500.0
EXPOSURE_S = 120.0


def render(size: int, density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated frame (ADU, float32) and its star truth."""
    sensor = scenes.sensor(
        width_px=size, height_px=size, read_noise_e=READ_NOISE_E, full_well_e=FULL_WELL_E, seed=5
    )
    scene = scenes.sky(
        pixel_scale_arcsec=PIXEL_SCALE, seeing_arcsec=SEEING, moffat_beta=3.0,
        sky_e_s_px=SKY_E_S_PX, zero_point_mag=ZERO_POINT, catalog_seed=seed,
        density_per_deg2=density, mag_bright=8.0, mag_limit=19.5,
    )  # fmt: skip
    spec = scenes.exposure(
        sensor, exposure_s=EXPOSURE_S, electrons_per_adu=GAIN, offset=10, seed=seed
    )
    result = render_exposure(sensor, spec, scene)
    flat = flat_response(sensor, x0=0, y0=0, width=size, height=size)
    level = np.float32(sensor.bias_adu + 10 * sensor.adu_per_offset)
    data = (result.image.astype(np.float32) - level - column_bias(sensor)[None, :size]) / flat
    return np.ascontiguousarray(data, dtype=np.float32), result.stars


def match(x: np.ndarray, y: np.ndarray, truth: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Index of the nearest truth star of each source within `radius`, else -1."""
    from scipy.spatial import cKDTree

    if truth.size == 0 or x.size == 0:
        return np.full(x.size, -1)
    distance, index = cKDTree(np.column_stack([truth["x"], truth["y"]])).query(
        np.column_stack([x, y])
    )
    return np.where(distance <= radius, index, -1)


def neighbours(truth: np.ndarray, radius: float, contrast_mag: float) -> np.ndarray:
    """True for stars with another within `radius` no more than `contrast_mag` fainter."""
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([truth["x"], truth["y"]]))
    found = np.zeros(truth.size, dtype=bool)
    for i, j in tree.query_pairs(radius):
        found[i] |= truth["mag"][j] < truth["mag"][i] + contrast_mag
        found[j] |= truth["mag"][i] < truth["mag"][j] + contrast_mag
    return found


KINDS = ("isolated", "blended", "unresolved")


def kind_of(truth: np.ndarray) -> np.ndarray:
    """0 isolated, 1 blended (neighbour 1-3 FWHM away), 2 unresolved (within 1 FWHM)."""
    kind = np.where(neighbours(truth, 3.0 * FWHM_PX, 3.0), 1, 0)
    return np.where(neighbours(truth, FWHM_PX, 4.0), 2, kind)


def robust(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    median = float(np.median(values))
    return median, 1.4826 * float(np.median(np.abs(values - median)))


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def photutils_fit(
    data: np.ndarray,
    catalog: np.ndarray,
    rms: float,
    psf_rows: np.ndarray,
    fit_rows: np.ndarray,
) -> tuple[float, float, np.ndarray]:
    """photutils: ePSF from `psf_rows`, PSFPhotometry of `fit_rows`; (build s, fit s, flux)."""
    from astropy.nddata import NDData
    from astropy.table import Table
    from photutils.psf import EPSFBuilder, PSFPhotometry, SourceGrouper, extract_stars

    background = sep.Background(data, bw=64, bh=64)
    subtracted = data - background.back()

    def build() -> Any:
        stars = extract_stars(
            NDData(subtracted),
            Table({"x": catalog["x"][psf_rows], "y": catalog["y"][psf_rows]}),
            size=int(2 * math.ceil(3 * FWHM_PX) + 1),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return EPSFBuilder(oversampling=4, maxiters=10, progress_bar=False)(stars)[0]

    t_build, epsf = timed(build)
    fit_shape = 2 * math.ceil(1.5 * FWHM_PX) + 1
    phot = PSFPhotometry(
        epsf,
        fit_shape,
        grouper=SourceGrouper(min_separation=3.0 * FWHM_PX),
        aperture_radius=1.5 * FWHM_PX,
        group_warning_threshold=1000,
    )
    init = Table(
        {
            "x": catalog["x"][fit_rows],
            "y": catalog["y"][fit_rows],
            "flux": catalog["flux"][fit_rows],
        }
    )
    error = np.sqrt(rms**2 + np.maximum(subtracted, 0.0) / GAIN)

    def fit() -> Any:
        if len(init) == 0:
            return {"flux_fit": np.zeros(0)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return phot(subtracted, error=error, init_params=init)

    t_fit, result = timed(fit)
    flux = np.full(len(catalog), np.nan)
    flux[fit_rows] = np.asarray(result["flux_fit"])
    return t_build, t_fit, flux


def run(size: int, density: float, repeats: int, photutils: bool) -> None:
    print(f"\n=== {size} x {size} px, {density:g} stars/deg^2 ({density / DEFAULT_DENSITY:g}x) ===")
    times: dict[str, list[float]] = {}
    rows: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    counts: list[tuple[int, int, int, int, int]] = []
    for repeat in range(repeats):
        data, truth = render(size, density, seed=20 + repeat)
        t_phot, (catalog, info) = timed(
            lambda data=data: measure_sources(
                data, gain_e_per_adu=GAIN, read_noise_e=READ_NOISE_E, saturation_adu=SATURATION_ADU
            )
        )
        t_build, psf = timed(
            lambda data=data, catalog=catalog, info=info: build_psf_model(
                data, catalog, gain_e_per_adu=GAIN, rms_adu=info.rms_adu, fwhm_px=info.fwhm_px
            )
        )

        def fit(mode: str, data=data, catalog=catalog, info=info, psf=psf) -> Any:  # type: ignore[no-untyped-def]
            return psf_photometry(
                data, catalog, gain_e_per_adu=GAIN, rms_adu=info.rms_adu,
                saturation_adu=SATURATION_ADU, psf=psf, fit=mode,  # type: ignore[arg-type]
            )  # fmt: skip

        t_all, result_all = timed(lambda: fit("all"))
        t_blend, result_blend = timed(lambda: fit("blended"))
        _, sizes = group_sources(catalog["x"], catalog["y"], radius_px=3.0 * psf.fwhm_at(0, 0))
        blended_rows = np.flatnonzero(sizes > 1)
        clean = (catalog["flags"] & (FLAG_SATURATED | FLAG_EDGE)) == 0
        psf_rows = np.flatnonzero(
            clean & (catalog["flags"] == 0) & (catalog["snr"] > 50) & (sizes == 1)
        )[:100]  # the brightest 100, as build_psf_model's default
        times.setdefault("measure_sources (photometry stage)", []).append(t_phot)
        times.setdefault("obsctl build_psf_model", []).append(t_build)
        times.setdefault("obsctl fit all (+ residual search)", []).append(t_all)
        times.setdefault("obsctl fit blended groups only", []).append(t_blend)
        flux_pu = flux_pu_all = np.full(len(catalog), np.nan)
        if photutils and repeat == 0:
            t_pu_build, t_pu_blend, flux_pu = photutils_fit(
                data, catalog, info.rms_adu, psf_rows, blended_rows
            )
            _, t_pu_all, flux_pu_all = photutils_fit(
                data, catalog, info.rms_adu, psf_rows, np.arange(len(catalog))
            )
            times.setdefault("photutils EPSFBuilder (1 run)", []).append(t_pu_build)
            times.setdefault("photutils PSFPhotometry blended (1 run)", []).append(t_pu_blend)
            times.setdefault("photutils PSFPhotometry all (1 run)", []).append(t_pu_all)
        if repeat == 0:
            print(
                f"PSF model: beta {psf.beta:.2f}, FWHM {psf.fwhm_at(size / 2, size / 2):.2f} px, "
                f"order {psf.order}, {psf.n_stars} stars"
            )
        counts.append(
            (
                truth.size,
                len(catalog),
                blended_rows.size,
                result_all.added.size,
                int(np.count_nonzero(np.isfinite(result_blend.table["flux_psf"]))),
            )
        )

        index = match(catalog["x"], catalog["y"], truth)
        good = (index >= 0) & clean & (catalog["snr"] > 50)
        true_adu = truth["flux_e"][index[good]] / GAIN
        kind = kind_of(truth)[index[good]]
        fluxes = {
            "aperture (1.5 FWHM)": catalog["flux"],
            "AUTO (Kron)": catalog["flux_auto"],
            "obsctl PSF (all)": result_all.table["flux_psf"],
            "obsctl PSF (blended only)": result_blend.table["flux_psf"],
            "photutils ePSF (blended only)": flux_pu,
            "photutils ePSF (all)": flux_pu_all,
        }
        errors = {
            "aperture (1.5 FWHM)": catalog["flux_err"],
            "AUTO (Kron)": catalog["flux_auto_err"],
            "obsctl PSF (all)": result_all.table["flux_psf_err"],
            "obsctl PSF (blended only)": result_blend.table["flux_psf_err"],
        }
        for name, flux in fluxes.items():
            error = errors.get(name, np.full(len(catalog), np.nan))
            with np.errstate(invalid="ignore", divide="ignore"):
                dm = -2.5 * np.log10(flux[good] / true_adu)
                sigma = 1.0857 * error[good] / flux[good]
            rows.setdefault(name, []).append((dm, kind, sigma))

    c = np.median(np.array(counts), axis=0)
    print(
        f"per frame (median): {c[0]:.0f} truth stars, {c[1]:.0f} catalog sources, {c[2]:.0f} "
        f"in blended groups, {c[3]:.0f} added from the residual"
    )
    print("\ntimes (median of repeats, s; ratio to measure_sources):")
    t_stage = float(np.median(times["measure_sources (photometry stage)"]))
    for name, values in times.items():
        t = float(np.median(values))
        print(f"  {name:40s} {t:8.3f}  {t / t_stage:6.2f}x")
    ours, theirs = "obsctl build_psf_model", "photutils EPSFBuilder (1 run)"
    totals = [
        ("obsctl PSF model + blended groups", ours, "obsctl fit blended groups only"),
        ("obsctl PSF model + all", ours, "obsctl fit all (+ residual search)"),
        ("photutils ePSF + blended groups", theirs, "photutils PSFPhotometry blended (1 run)"),
        ("photutils ePSF + all", theirs, "photutils PSFPhotometry all (1 run)"),
    ]
    for label, build, fit_key in totals:
        if build in times:
            t = float(np.median(times[build])) + float(np.median(times[fit_key]))
            print(f"  {label:40s} {t:8.3f}  {t / t_stage:6.2f}x")

    print("\naccuracy, S/N > 50 (mag, method - truth: median, robust scatter, n):")
    header = "".join(f"{k:>24s}" for k in KINDS)
    print(f"  {'':30s}{header} {'blend-iso':>9s} {'|d|<0.02':>8s} {'sigma':>6s}")
    for name, parts in rows.items():
        dm = np.concatenate([p[0] for p in parts])
        kind = np.concatenate([p[1] for p in parts])
        sigma = np.concatenate([p[2] for p in parts])
        cells, medians = [], []
        for k in range(len(KINDS)):
            values = dm[(kind == k) & np.isfinite(dm)]
            median, scatter = robust(values)
            medians.append(median)
            cells.append(f"{median:+8.4f} {scatter:7.4f} {values.size:6d}")
        blend = dm[(kind == 1) & np.isfinite(dm)]
        reference = medians[0] if name.startswith(("aperture", "AUTO")) else 0.0
        frac = float((np.abs(blend - reference) < 0.02).mean()) if blend.size else math.nan
        sig = sigma[(kind == 1) & np.isfinite(dm)]
        sig_median = float(np.nanmedian(sig)) if np.isfinite(sig).any() else math.nan
        print(
            f"  {name:30s}{'  '.join(cells)} {medians[1] - medians[0]:+9.4f} {frac:8.2f}"
            f" {sig_median:6.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-photutils", action="store_true", help="skip photutils")
    args = parser.parse_args()
    print(
        f"FWHM {FWHM_PX:.2f} px (Moffat beta 3), {EXPOSURE_S:g} s, sky {SKY_E_S_PX:.2f} e-/s/px, "
        f"gain {GAIN} e-/ADU, read noise {READ_NOISE_E} e-"
    )
    for factor in (1.0, 5.0):
        run(args.size, factor * DEFAULT_DENSITY, args.repeats, not args.no_photutils)


if __name__ == "__main__":
    main()
