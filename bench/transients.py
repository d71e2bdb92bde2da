"""Difference imaging: latency per frame and completeness, ours against properimage and sfft.

Renders a reference (2.5" seeing, 240 s) and a new frame (3.5", 60 s, shifted by a few
pixels) of one field with the camera simulator (`obsctl.simulators.pairs.render_pair`), with
point transients only in the new frame, half on empty sky and half on galaxies (placed at
half a half-light radius from galaxies brighter than R = 19). Both frames are calibrated with
the simulator's truth (background-subtracted electrons).

Latency (one core: OMP_NUM_THREADS=1 and threadpoolctl, FFTs with one worker), per frame of
the rendered size and scaled to 4096 x 4096 by pixel count, medians over repeats:

- ours: `align_reference` (WCS mapping, separable cubic shift or spline map), PSF estimation
  on 40 bright stars (reported apart), `subtract_zogy` (with source noise) and
  `detect_transients` (SEP on the score, both signs);
- properimage 0.7 `operations.subtract` (ZOGY, with its own PSF estimation; once: slow);
- sfft 1.7 `GeneralSFFTSubtract.GSS` (Alard-Lupton in Fourier space, Numpy backend, one
  thread, kernel polynomial order 2) on arrays, its numba compilation timed apart;
- reproject 0.21 `reproject_interp` (bicubic) for the alignment step;
- the whole difference stage's work on the frame (`obsctl.pipeline.difference.
  difference_frame`: background, PSFs, flux ratio, ZOGY, detection, forced photometry,
  aperture correction, cutouts and the real/bogus classifier).

Quality on the same pair: the difference over its predicted noise on blank sky (std, 1 is
right; for the libraries, the robust std of D over the ZOGY prediction of its noise), the
residual RMS over the noise within 2 FWHM of bright constant stars, and the recovered flux
of the bright transients over the truth (median, forced PSF photometry on each method's D
with its PSF).

Completeness: the transients span the frame's 5-sigma limiting magnitude (PSF-weighted
point-source limit of the new frame: ``5 * sigma / sqrt(sum(P^2))``) from 1.5 mag brighter
to 1 mag fainter; a transient is recovered when a candidate with score >= 5 lies within 1.5
px. Printed per 0.25 mag bin of (mag - limiting mag), on empty sky and on galaxies, with the
magnitude of 50 % completeness (interpolated).

The libraries run on the central ``--library-size`` crop of the same pair (sfft exhausted
memory at 4096 x 4096, properimage takes minutes), their times scaled by pixel count.
properimage 0.7.2 needs tinynpydb, whose source build downloads setuptools at build time: it
is not in the ``bench`` extra; install it by hand with ``pip install wheel && pip install
--no-build-isolation tinynpydb && pip install properimage``, or pass ``--no-properimage``.

Usage: ``python bench/transients.py [--size 4096] [--repeats 3] [--transients 600]
[--library-size 1024] [--no-properimage] [--no-sfft] [--no-reproject]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from obsctl.processing.alignment import align_reference  # noqa: E402
from obsctl.processing.subtraction import (  # noqa: E402
    detect_transients,
    estimate_psf,
    forced_photometry,
    subtract_zogy,
)
from obsctl.simulators import scenes  # noqa: E402
from obsctl.simulators.artefacts import galaxies  # noqa: E402
from obsctl.simulators.pairs import FramePair, render_pair  # noqa: E402
from obsctl.simulators.render import scene_wcs  # noqa: E402

SEEING_NEW = 3.5
SEEING_REF = 2.5
ZERO_POINT = 22.0  # scenes.sky default: V giving 1 e-/s
EXPOSURE_NEW = 60.0
GALAXY_DENSITY = 3000.0  # per deg^2 brighter than R 21: the real sky
PSF_RADIUS = 12


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def limiting_mag(psf: np.ndarray, sigma: float) -> float:
    """5-sigma PSF-fit point-source limit of the new frame (mag)."""
    flux = 5.0 * sigma / math.sqrt(float(np.sum(psf**2)))
    return ZERO_POINT - 2.5 * math.log10(flux / EXPOSURE_NEW)


def moffat_limit(size: int, sigma: float) -> float:
    from obsctl.simulators.render import moffat_stamp

    stamp = moffat_stamp(0.0, 0.0, fwhm_px=SEEING_NEW, beta=3.0, radius_px=PSF_RADIUS, oversample=9)
    return limiting_mag(stamp / stamp.sum(), sigma)


def placements(size: int, count: int, seed: int) -> tuple[list[tuple[float, float]], int]:
    """Half the transients on galaxies brighter than R 19, half on empty sky (x, y in new)."""
    rng = np.random.default_rng(seed)
    chip = scenes.sensor(width_px=size, height_px=size)
    scene = scenes.sky(catalog_seed=seed, galaxy_density_r21_per_deg2=GALAXY_DENSITY)
    wcs = scene_wcs(scene, chip)
    radius = size * math.sqrt(2) / 2 / 3600.0
    cat = galaxies(
        scene.ra_deg, scene.dec_deg, radius, seed=seed, density_r21_per_deg2=GALAXY_DENSITY
    )
    gx, gy = wcs.world_to_pixel_values(cat["ra_deg"], cat["dec_deg"])
    keep = (cat["mag_r"] < 19.0) & (gx > 40) & (gx < size - 40) & (gy > 40) & (gy < size - 40)
    gx, gy, reff = gx[keep], gy[keep], cat["r_eff_arcsec"][keep]
    n_gal = min(count // 2, gx.size)
    pick = rng.choice(gx.size, n_gal, replace=False)
    angle = rng.uniform(0, 2 * math.pi, n_gal)
    on_gal = [
        (float(gx[i] + 0.5 * reff[i] * math.cos(a)), float(gy[i] + 0.5 * reff[i] * math.sin(a)))
        for i, a in zip(pick, angle, strict=True)
    ]
    empty: list[tuple[float, float]] = []
    tree = cKDTree(np.column_stack([gx, gy])) if gx.size else None
    while len(empty) < count - n_gal:
        x, y = rng.uniform(40, size - 40, 2)
        if tree is None or tree.query((x, y))[0] > 30:
            empty.append((float(x), float(y)))
    return on_gal + empty, n_gal


def psf_stars(pair: FramePair, count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Bright, unsaturated, isolated catalog stars inside the frame (from the truth table)."""
    stars = pair.new_truth.stars
    size = pair.new.shape[0]
    tree = cKDTree(np.column_stack([stars["x"], stars["y"]]))
    close = np.array([len(tree.query_ball_point((x, y), 15.0)) > 1 for x, y in stars[["x", "y"]]])
    ok = (
        (stars["id"] >= 0)
        & ~close
        & (stars["mag"] > 14.5)
        & (stars["mag"] < 16.5)
        & (stars["x"] > 20)
        & (stars["x"] < size - 20)
        & (stars["y"] > 20)
        & (stars["y"] < size - 20)
    )
    chosen = stars[ok][np.argsort(stars["mag"][ok])[:count]]
    return chosen["x"], chosen["y"]


def blank_sky(pair: FramePair, aligned: np.ndarray, valid: np.ndarray) -> np.ndarray:
    src = np.abs(pair.new) > 3 * pair.sigma_new
    src |= np.abs(aligned) > 3 * pair.sigma_ref
    return valid & ~ndimage.binary_dilation(src, iterations=6)


def bright_star_mask(pair: FramePair) -> np.ndarray:
    stars = pair.new_truth.stars
    bright = stars[(stars["id"] >= 0) & (stars["mag"] < 16.0)]
    mask = np.zeros(pair.new.shape, bool)
    mask[
        np.clip(np.round(bright["y"]).astype(int), 0, mask.shape[0] - 1),
        np.clip(np.round(bright["x"]).astype(int), 0, mask.shape[1] - 1),
    ] = True
    return ndimage.binary_dilation(mask, iterations=int(2 * SEEING_NEW))


def quality(
    name: str,
    diff: np.ndarray,
    noise: np.ndarray | float,
    psf: Any,
    transients: np.ndarray,
    blank: np.ndarray,
    stars: np.ndarray,
) -> None:
    z = diff / noise
    zb = z[blank]
    robust = 1.4826 * float(np.median(np.abs(zb - np.median(zb))))
    star_rms = float(np.sqrt(np.mean(z[stars & np.isfinite(z)] ** 2)))
    noise_img = np.broadcast_to(np.asarray(noise, dtype=np.float64), diff.shape)
    fp = forced_photometry(diff, noise_img, psf, transients["x"], transients["y"])
    ratio = float(np.nanmedian(fp.flux / transients["flux_e"]))
    print(
        f"  {name:12s} D/noise blank std {float(np.std(zb)):.3f} (robust {robust:.3f})  "
        f"residual RMS/noise at bright stars {star_rms:.2f}  transient flux/truth {ratio:.3f} "
        f"({transients.size} with S/N > 10)"
    )


def run_sfft(ref: np.ndarray, new: np.ndarray, kernel_hw: int) -> tuple[float, float, np.ndarray]:
    from sfft.sfftcore.SFFTConfigure import SingleSFFTConfigure
    from sfft.sfftcore.SFFTSubtract import GeneralSFFTSubtract

    ref64 = np.ascontiguousarray(ref.T, dtype=np.float64)
    new64 = np.ascontiguousarray(new.T, dtype=np.float64)
    t_conf, config = timed(
        lambda: SingleSFFTConfigure.SSC(
            NX=ref64.shape[0],
            NY=ref64.shape[1],
            KerHW=kernel_hw,
            KerPolyOrder=2,
            BGPolyOrder=0,
            ConstPhotRatio=True,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=1,
            VERBOSE_LEVEL=0,
        )
    )
    t_sub, out = timed(
        lambda: GeneralSFFTSubtract.GSS(
            PixA_I=ref64,
            PixA_J=new64,
            PixA_mI=ref64,
            PixA_mJ=new64,
            SFFTConfig=config,
            ContamMask_I=None,
            BACKEND_4SUBTRACT="Numpy",
            NUM_CPU_THREADS_4SUBTRACT=1,
            VERBOSE_LEVEL=0,
        )
    )
    return t_conf, t_sub, np.ascontiguousarray(out[1].T, dtype=np.float32)


def completeness(
    found: np.ndarray, pair: FramePair, n_gal: int, mag_lim: float, label: str
) -> None:
    t = pair.transients
    pos = found[found["score"] >= 5.0]
    tree = cKDTree(np.column_stack([pos["x"], pos["y"]])) if pos.size else None
    hit = np.zeros(t.size, bool)
    if tree is not None:
        hit = tree.query(np.column_stack([t["x"], t["y"]]))[0] <= 1.5
    delta = t["mag"] - mag_lim
    edges = np.arange(-1.5, 1.01, 0.25)
    print(f"completeness ({label}): (mag - limiting mag) bin, empty sky, on galaxies")
    groups = {"empty": np.arange(t.size) >= n_gal, "galaxies": np.arange(t.size) < n_gal}
    m50 = {}
    for key, sel in groups.items():
        centres, fractions = [], []
        for lo in edges[:-1]:
            inside = sel & (delta >= lo) & (delta < lo + 0.25)
            centres.append(lo + 0.125)
            fractions.append(hit[inside].mean() if inside.any() else math.nan)
        m50[key] = (centres, fractions)
    for i, lo in enumerate(edges[:-1]):
        e, g = m50["empty"][1][i], m50["galaxies"][1][i]
        print(f"  {lo:+.2f}..{lo + 0.25:+.2f}   {e:5.2f}   {g:5.2f}")
    for key, (centres, fractions) in m50.items():
        c, f = np.array(centres), np.array(fractions)
        ok = np.isfinite(f)
        c, f = c[ok], f[ok]
        below = np.flatnonzero(f < 0.5)
        if below.size == 0 or below[0] == 0:
            print(f"  50 % completeness on {key}: outside the range")
            continue
        j = below[0]
        m = c[j - 1] + (0.5 - f[j - 1]) * (c[j] - c[j - 1]) / (f[j] - f[j - 1])
        print(f"  50 % completeness on {key}: limiting mag {m:+.2f} (goal: >= -0.50)")


def whole_stage(pair: FramePair, repeats: int) -> tuple[float, Any]:
    """Median seconds of the difference stage's work (`difference_frame`) on the pair.

    The new frame goes in as photometry and astrometry hand it on: a SEP catalog (S/N from
    the sky noise), its FWHM, a gain of 1 and the exact WCS; the reference as the builder
    writes one.
    """
    import sep
    from astropy.io import fits
    from astropy.table import Table

    from obsctl.classify.realbogus import RealBogusClassifier
    from obsctl.frame import Frame
    from obsctl.pipeline.difference import difference_frame
    from obsctl.pipeline.reference import ReferenceImage

    found = sep.extract(pair.new, 10.0, err=pair.sigma_new)
    sources = np.zeros(
        len(found),
        dtype=[(n, np.float64) for n in ("x", "y", "flux", "snr", "peak", "background")]
        + [("flags", np.int64)],
    )
    for name in ("x", "y", "flux", "peak"):
        sources[name] = found[name]
    sources["snr"] = found["flux"] / np.sqrt(
        np.clip(found["flux"], 0, None) + found["npix"] * pair.sigma_new**2
    )
    sources["flags"] = found["flag"]
    header = pair.new_wcs.to_header()
    header["PHOTZP"], header["EXPTIME"] = ZERO_POINT, EXPOSURE_NEW
    frame = Frame(
        data=pair.new, header=header, sources=sources, fwhm_px=SEEING_NEW, gain_e_per_adu=1.0
    )
    ref_header = fits.Header(pair.reference_wcs.to_header())
    ref_header["NCOMBINE"] = 1
    reference = ReferenceImage(
        image=pair.reference,
        noise=np.full(pair.reference.shape, pair.sigma_ref, dtype=np.float32),
        coverage=np.ones(pair.reference.shape, dtype=np.uint16),
        wcs=pair.reference_wcs,
        header=ref_header,
        catalog=Table(),
    )
    classifier = RealBogusClassifier(threads=1)
    seconds, outcome = [], None
    for _ in range(repeats):
        t, outcome = timed(
            lambda: difference_frame(frame, reference, real_bogus=classifier, max_candidates=200)
        )
        seconds.append(t)
    return float(np.median(seconds)), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transients", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--library-size", type=int, default=1024)
    parser.add_argument("--no-properimage", action="store_true")
    parser.add_argument("--no-sfft", action="store_true")
    parser.add_argument("--no-reproject", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    scale = (4096 / args.size) ** 2
    print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores, shared)")

    rng = np.random.default_rng(args.seed)
    sigma_new = math.sqrt(5.0 * EXPOSURE_NEW + 9.0)
    m_lim = moffat_limit(args.size, sigma_new)
    xy, n_gal = placements(args.size, args.transients, args.seed)
    mags = tuple(float(m) for m in m_lim + rng.uniform(-1.5, 1.0, len(xy)))
    t_render, pair = timed(
        lambda: render_pair(
            size_px=args.size,
            seeing_new_arcsec=SEEING_NEW,
            seeing_ref_arcsec=SEEING_REF,
            exposure_new_s=EXPOSURE_NEW,
            shift_px=(3.3, -2.7),
            transient_mags=mags,
            transient_xy=tuple(xy),
            seed=args.seed,
            galaxy_density_r21_per_deg2=GALAXY_DENSITY,
        )
    )
    print(
        f"rendered a {args.size}^2 pair with {len(xy)} transients ({n_gal} on galaxies) "
        f"in {t_render:.1f} s; limiting mag of the new frame {m_lim:.2f}"
    )

    threadpool_limits(1)
    sx, sy = psf_stars(pair)
    times: dict[str, list[float]] = {k: [] for k in ("align", "psf", "subtract", "detect")}
    for _ in range(args.repeats):
        t, aligned = timed(
            lambda: align_reference(
                pair.reference,
                reference_wcs=pair.reference_wcs,
                target_wcs=pair.new_wcs,
                target_shape=pair.new.shape,
            )
        )
        times["align"].append(t)
        t, psfs = timed(
            lambda a=aligned: (
                estimate_psf(pair.new, sx, sy, radius_px=PSF_RADIUS),
                estimate_psf(a.image, sx, sy, radius_px=PSF_RADIUS, mask=a.mask),
            )
        )
        times["psf"].append(t)
        t, result = timed(
            lambda a=aligned, p=psfs: subtract_zogy(
                pair.new,
                a.image,
                psf_new=p[0],
                psf_ref=p[1],
                sigma_new=pair.sigma_new,
                sigma_ref=pair.sigma_ref,
                flux_ratio=pair.flux_ratio,
                gain_new=1.0,
                gain_ref=1.0,
                mask=a.mask,
            )
        )
        times["subtract"].append(t)
        t, found = timed(lambda r=result: detect_transients(r.score, mask=r.mask))
        times["detect"].append(t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    total = med["align"] + med["subtract"] + med["detect"]
    print(
        f"alignment path: {aligned.method}, shift {aligned.shift_px[0]:.3f}, "
        f"{aligned.shift_px[1]:.3f} px; map error {aligned.mapping.interpolation_error_px:.1e} px"
    )
    print(f"latency per 4096^2 frame, one core (median of {args.repeats}; x{scale:.2f} by pixels):")
    for k in ("align", "subtract", "detect"):
        print(f"  ours {k:9s} {med[k] * scale:6.2f} s")
    print(
        f"  ours total     {total * scale:6.2f} s (goal <= 1.5 s); PSF estimation apart "
        f"{med['psf'] * scale:.2f} s (2 x 40 stars, does not scale with pixels)"
    )

    stage_seconds, outcome = whole_stage(pair, args.repeats)
    print(
        f"  the whole stage (difference_frame: background, alignment, PSFs, flux ratio, ZOGY, "
        f"detection, forced photometry, aperture correction, cutouts, real/bogus of "
        f"{outcome.detections} candidates) {stage_seconds * scale:6.2f} s per 4096^2 "
        f"(goal <= 1.5 s)"
    )

    blank = blank_sky(pair, aligned.image, ~result.mask)
    stars = bright_star_mask(pair) & ~result.mask
    bright = pair.transients["flux_e"] > 10 * result.sky_noise / math.sqrt(np.sum(result.psf**2))
    print("quality on the same pair:")
    quality(
        "ours (ZOGY)",
        result.difference,
        result.noise,
        result.psf_at,
        pair.transients[bright],
        blank,
        stars,
    )
    detected = result.score[~result.mask]
    print(
        f"  ours score blank std {float(np.std(result.score[blank])):.3f}; "
        f"{len(found)} candidates >= 5 sigma ({(found['score'] < 0).sum()} negative), "
        f"{detected.size} valid pixels"
    )
    completeness(found, pair, n_gal, m_lim, "ours")

    if not args.no_reproject:
        from reproject import reproject_interp

        t, _ = timed(
            lambda: reproject_interp(
                (pair.reference, pair.reference_wcs),
                pair.new_wcs,
                shape_out=pair.new.shape,
                order="bicubic",
                roundtrip_coords=False,
            )
        )
        print(
            f"  reproject_interp bicubic alignment {t * scale:6.2f} s per 4096^2 "
            f"({t / med['align']:.0f} x ours)"
        )

    # The libraries on the central crop (sfft's 4096^2 run exhausted memory; properimage
    # takes minutes), times scaled by pixel count; ours on the same crop for the ratio.
    c = min(args.library_size, args.size)
    lo = (args.size - c) // 2
    cut = (slice(lo, lo + c), slice(lo, lo + c))
    lib_scale = (4096 / c) ** 2
    new_c, ref_c = pair.new[cut], np.where(aligned.mask, 0.0, aligned.image)[cut]
    t_in = pair.transients[bright]
    inside = (t_in["x"] >= lo + 15) & (t_in["x"] < lo + c - 15) & (t_in["y"] >= lo + 15)
    inside &= t_in["y"] < lo + c - 15
    t_c = t_in[inside].copy()
    t_c["x"] -= lo
    t_c["y"] -= lo
    t_ours, ours_c = timed(
        lambda: subtract_zogy(
            new_c,
            ref_c,
            psf_new=psfs[0],
            psf_ref=psfs[1],
            sigma_new=pair.sigma_new,
            sigma_ref=pair.sigma_ref,
            flux_ratio=pair.flux_ratio,
            gain_new=1.0,
            gain_ref=1.0,
        )
    )
    print(f"libraries on the central {c}^2 (times x{lib_scale:.0f} to 4096^2):")
    quality(
        "ours (ZOGY)", ours_c.difference, ours_c.noise, ours_c.psf_at, t_c, blank[cut], stars[cut]
    )
    print(f"  ours subtract {t_ours * lib_scale:6.2f} s per 4096^2")
    if not args.no_sfft:
        hw = max(4, round(2.5 * SEEING_NEW))
        t_conf, t_sub, diff = run_sfft(ref_c, new_c, hw)
        quality("sfft (A-L)", diff, ours_c.noise, psfs[0], t_c, blank[cut], stars[cut])
        print(
            f"  sfft subtract {t_sub * lib_scale:6.2f} s per 4096^2 ({t_sub / t_ours:.0f} x "
            f"ours); numba compilation {t_conf:.1f} s once"
        )
    if not args.no_properimage:
        try:
            from properimage import operations
        except ImportError:
            print("  properimage not installed (see the module docstring)")
        else:
            t, out = timed(
                lambda: operations.subtract(
                    ref=ref_c.astype(np.float64),
                    new=new_c.astype(np.float64),
                    align=False,
                    beta=False,
                    shift=False,
                )
            )
            # Its D has unit white noise (ZOGY eq. 13): times our F_D^-1 to compare fluxes.
            d_pi = np.asarray(out[0].real, dtype=np.float32) * np.float32(ours_c.sky_noise)
            quality("properimage", d_pi, ours_c.noise, ours_c.psf_at, t_c, blank[cut], stars[cut])
            print(
                f"  properimage subtract (with its PSFs) {t * lib_scale:6.2f} s per 4096^2 "
                f"({t / t_ours:.0f} x ours)"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
