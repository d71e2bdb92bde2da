"""Per-frame pipeline: latency per stage, throughput of the worker pool, photutils for scale.

The camera simulator renders one 4096x4096 light frame of about 4000 stars (with its truth)
and bias, dark and flat-lamp frames, into a temporary data directory laid out as the daemon
lays it out (raw store, exposure log); real masters are built from them with
`build_masters`, and the stages come from `build_stages` with the config below (synthetic
reference catalog = the rendered sky, so the astrometry and zero point have real work).
Then:

1. Latency: `process_file` in this process (load; calibrate, photometry, astrometry, zero
   point; write of the calibrated frame and the catalog), N runs after one warm-up run;
   medians per stage and of the total. ``load`` is timed by a separate `load_frame` call
   just before each run, ``write`` is the total less the load and the stages. Under the
   photometry stage, its first half (`detect_sources`: background and SEP detection) is timed
   on its own, the rest is the measurement (apertures, Kron, half-flux radius, core fits).
2. Throughput: `worker_pool` with W workers processing M copies of the frame (distinct
   paths) through `process_file`, after a warm-up frame on every worker (start-up, imports
   and first master reads excluded); wall time and frames per second.
3. photutils on the same calibrated pixels: ``Background2D`` (64 px boxes, sigma-clipped
   median, 3x3 filter), ``DAOStarFinder`` on the background-subtracted image at the same
   threshold (3 times the pipeline's background rms) with the pipeline's FWHM, and
   ``aperture_photometry`` with one ``CircularAperture`` of the pipeline's main radius
   (DAOFIND's threshold is in its own units: photutils scales it by the kernel's noise factor,
   and without a minimum area it keeps many more noise peaks than SEP);
   medians of a few runs and the ratio to the photometry stage, which does background,
   detection and more measurement than this (four apertures, Kron, half-flux radius, core
   fits, windowed centroids, flags). Skipped when photutils is not installed
   (``pip install -e .[bench]``).

Goals from the issue: at most 0.8 s per frame in total, at least 4 times faster than the
photutils path, at least 1.5 frames/s with the pool on a 2-core machine. Prints figures;
nothing is asserted.

Usage: ``python bench/pipeline.py [--runs N] [--frames M] [--workers W] [--photutils-runs N]``
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import astropy
import numpy as np
import sep
from astropy.io import fits
from scipy.spatial import cKDTree

from obsctl.calibration.build import build_masters
from obsctl.config import Config
from obsctl.devices import CameraImage, MountStatus, PierSide
from obsctl.embedded import reference_catalog
from obsctl.pipeline import worker
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import FrameResult, load_frame, process_file, worker_pool
from obsctl.processing.photometry import detect_sources
from obsctl.simulators import scenes
from obsctl.simulators.camera_model import sensor_model, sky_scene
from obsctl.simulators.render import SkyScene, render_exposure
from obsctl.simulators.sky import pixel_scale_arcsec
from obsctl.store.datadir import DataDir
from obsctl.store.headers import FrameContext

SIZE = 4096
FOCAL_LENGTH_MM = 800.0
LONGITUDE = -17.88
START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
FIELD_RA_DEG, FIELD_DEC_DEG = 150.0, 20.0
# The mount's idea of the pointing: about 2 arcmin from the truth, for the WCS fit to find.
POINTING_ERROR_ARCMIN = (1.5, -1.3)  # east, north
LIGHT_S = 60.0
DARK_S = LIGHT_S  # darks of the lights' exposure: no scaling
FLAT_S = 1.0
CALIBRATION_FRAMES = 5
FILTER = "V"
# The sky: 0.97"/px makes a 4096 px frame 1.10 deg on a side (1.22 deg^2); ~3300 stars/deg^2
# down to V = 18 put ~4000 star centres on the frame, nearly all of them above the detection
# limit of a 60 s frame (V ~ 18.4 at 50 % completeness).
SKY = {
    "seed": 2024,
    "star_density_per_deg2": 3300.0,
    "mag_bright": 8.0,
    "mag_limit": 18.0,
}
MATCH_RADIUS_PX = 1.5  # detection to truth star


def bench_config(data_dir: Path, workers: int) -> Config:
    return Config.model_validate(
        {
            "version": 1,
            "site": {"name": "bench", "latitude_deg": 28.76, "longitude_deg": LONGITUDE},
            "telescope": {
                "name": "bench scope",
                "focal_length_mm": FOCAL_LENGTH_MM,
                "aperture_mm": 200,
            },
            "data": {"directory": str(data_dir)},
            "devices": {"camera": {"driver": "simulator"}},
            "pipeline": {"workers": workers, "reference_catalog": "synthetic"},
            "simulator": {
                "camera": {"width_px": SIZE, "height_px": SIZE},
                "sky": SKY,
            },
        }
    )


def scene_of(config: Config, *, lamp: bool) -> SkyScene:
    """The scene as the simulated camera builds it, at the field and in the bench's filter."""
    assert config.simulator is not None
    return sky_scene(
        config.simulator.sky,
        ra_deg=FIELD_RA_DEG,
        dec_deg=FIELD_DEC_DEG,
        rotation_deg=0.0,
        pixel_scale_arcsec=pixel_scale_arcsec(
            config.simulator.camera.pixel_size_um, FOCAL_LENGTH_MM
        ),
        band=FILTER,
        flat_panel=lamp,
    )


class Observatory:
    """Renders frames into a data directory as the daemon stores them (calibration logged)."""

    def __init__(self, data_dir: Path, config: Config) -> None:
        assert config.simulator is not None
        self.config = config
        self.camera = config.simulator.camera
        self.sensor = sensor_model(config.simulator.camera)
        self.store = DataDir(data_dir).raw_store()
        self.db = DataDir(data_dir).open_log()
        self.count = 0

    def take(
        self, image_type: str, exposure_s: float, *, filter_name: str | None = None
    ) -> tuple[Path, np.ndarray]:
        self.count += 1
        light = image_type in ("LIGHT", "FLAT")
        scene = scene_of(self.config, lamp=image_type == "FLAT") if light else None
        spec = scenes.exposure(
            self.sensor,
            exposure_s=exposure_s,
            light=light,
            electrons_per_adu=self.camera.electrons_per_adu,
            seed=self.count,
        )
        result = render_exposure(self.sensor, spec, scene)
        start = START + timedelta(minutes=2 * self.count)
        mount = None
        if image_type == "LIGHT":
            east, north = POINTING_ERROR_ARCMIN
            mount = MountStatus(
                ra_deg=FIELD_RA_DEG + east / 60.0 / math.cos(math.radians(FIELD_DEC_DEG)),
                dec_deg=FIELD_DEC_DEG + north / 60.0,
                alt_deg=62.0,
                az_deg=190.0,
                slewing=False,
                tracking=True,
                at_park=False,
                pier_side=PierSide.WEST,
                sidereal_time_h=None,
            )
        meta = scenes.image_metadata(
            spec,
            self.sensor,
            start_time=start,
            sensor_name=self.camera.sensor_name,
            camera_name=self.camera.name,
        )
        ctx = FrameContext(
            image=CameraImage(data=result.image, metadata=meta),
            image_type=image_type,
            site=self.config.site,
            telescope=self.config.telescope,
            frame_number=self.count,
            start_time=start,
            target="Bench field" if image_type == "LIGHT" else None,
            filter_name=filter_name,
            mount=mount,
        )
        # Lights are processed from their path, not the queue: they get no exposure row.
        log_db = self.db if image_type != "LIGHT" else None
        path, _ = scenes.store_raw(self.store, log_db, ctx)
        return path, result.stars


def prepare(data_dir: Path, config: Config) -> tuple[Path, np.ndarray]:
    """Render calibration frames and the light frame; build the masters."""
    obs = Observatory(data_dir, config)
    try:
        t0 = time.perf_counter()
        for _ in range(CALIBRATION_FRAMES):
            obs.take("BIAS", 0.0)
        for _ in range(CALIBRATION_FRAMES):
            obs.take("DARK", DARK_S)
        for _ in range(CALIBRATION_FRAMES):
            obs.take("FLAT", FLAT_S, filter_name=FILTER)
        light, truth = obs.take("LIGHT", LIGHT_S, filter_name=FILTER)
        t1 = time.perf_counter()
        masters = build_masters(obs.db, data_dir)
        t2 = time.perf_counter()
    finally:
        obs.db.close()
    print(
        f"rendered {3 * CALIBRATION_FRAMES} calibration frames and the light frame in "
        f"{t1 - t0:.1f} s; built {len(masters)} masters "
        f"({', '.join(m.kind for m in masters)}) in {t2 - t1:.1f} s",
        flush=True,
    )
    return light, truth


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt_ms(seconds: float) -> str:
    return f"{1000.0 * seconds:7.0f} ms"


def close_stages(stages: list[tuple[Any, str]]) -> None:
    for stage, _ in stages:
        close = getattr(stage, "close", None)
        if callable(close):
            close()


def match_truth(xy: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """Return (detections within MATCH_RADIUS_PX of a truth star, truth stars so found)."""
    if len(xy) == 0 or len(truth) == 0:
        return 0, 0
    tree = cKDTree(np.column_stack([truth["x"], truth["y"]]))
    dist, index = tree.query(xy, distance_upper_bound=MATCH_RADIUS_PX)
    found = np.isfinite(dist)
    return int(found.sum()), int(np.unique(index[found]).size)


# --------------------------------------------------------------------------- 1. latency


def latency(path: Path, config: Config, data_dir: Path, runs: int) -> FrameResult:
    stages = build_stages(config, data_dir, reference_catalog(config))
    process_file(str(path), stages=stages, data_dir=data_dir)  # warm-up: imports, master cache
    names = [stage.name for stage, _ in stages]
    per_stage: dict[str, list[float]] = {name: [] for name in ["load", *names, "write"]}
    totals: list[float] = []
    result: FrameResult | None = None
    for _ in range(runs):
        t0 = time.perf_counter()
        load_frame(path)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = process_file(str(path), stages=stages, data_dir=data_dir)
        total = time.perf_counter() - t0
        if result.failed_stage is not None:
            raise SystemExit(f"the frame failed in {result.failed_stage}: {result.reason}")
        totals.append(total)
        per_stage["load"].append(load_s)
        for name in names:
            per_stage[name].append(result.seconds.get(name, math.nan))
        per_stage["write"].append(total - load_s - sum(result.seconds.values()))
    assert result is not None

    # The photometry stage's first half on its own, on the calibrated pixels.
    calibrated = stages[names.index("calibrate")][0].process(load_frame(path))
    rms_floor = config.pipeline.read_noise_e / float(calibrated.header["EGAIN"])
    detect = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detect_sources(calibrated.data, mask=calibrated.mask, rms_floor_adu=rms_floor)
        detect.append(time.perf_counter() - t0)

    # The photometry stage again without its PSF fit, on the same pixels: what the fit costs.
    photometry = stages[names.index("photometry")][0]
    no_psf = dataclasses.replace(photometry, psf_fit="off")
    without_psf = []
    for _ in range(runs):
        t0 = time.perf_counter()
        no_psf.process(calibrated)
        without_psf.append(time.perf_counter() - t0)

    print(f"\n1. latency, in this process, median of {runs} runs after a warm-up run")
    for name, values in per_stage.items():
        note = ""
        if name == "load":
            note = "  (load_frame, timed just before each run)"
        elif name == "write":
            note = "  (total - load - stages: calibrated FITS + catalog)"
        print(f"   {name:28s} {fmt_ms(median(values))}{note}")
        if name == "photometry":
            bg = median(detect)
            print(f"     {'background + detect':26s} {fmt_ms(bg)}  (detect_sources alone)")
            print(f"     {'measure':26s} {fmt_ms(median(values) - bg)}  (the rest of the stage)")
            plain = median(without_psf)
            print(
                f"     {'without the PSF fit':26s} {fmt_ms(plain)}  (psf_fit = off; with "
                f"psf_fit = {photometry.psf_fit!r} the stage takes {median(values) / plain:.2f}x)"
            )
    print(
        f"   {'total (process_file)':28s} {fmt_ms(median(totals))}  "
        f"(range {1000 * min(totals):.0f}-{1000 * max(totals):.0f} ms; goal <= 800 ms)"
    )
    close_stages(stages)
    return result


# --------------------------------------------------------------------------- 2. throughput


def _warm_up(path: str) -> int:
    """Process one frame in a pool worker; return the worker's pid."""
    worker.process_file(path)
    return os.getpid()


def throughput(
    path: Path, factory: Callable[[], Any], data_dir: Path, workers: int, frames: int
) -> None:
    copies = []
    for i in range(frames):
        copy = path.with_name(path.name.replace("_LIGHT_", f"_LIGHT{i + 1:02d}_"))
        shutil.copyfile(path, copy)
        copies.append(copy)
    t0 = time.perf_counter()
    pool = worker_pool(workers, factory, data_dir)
    try:
        seen: set[int] = set()
        batches = 0
        while len(seen) < workers and batches < 5:
            futures = [pool.submit(_warm_up, str(path)) for _ in range(workers)]
            seen |= {f.result() for f in futures}
            batches += 1
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        futures = [pool.submit(process_file, str(p)) for p in copies]
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    finally:
        pool.shutdown()
    failed = [r for r in results if r.failed_stage is not None]
    per_frame = [sum(r.seconds.values()) for r in results]
    print(f"\n2. throughput, worker_pool({workers}), {frames} copies of the frame")
    print(
        f"   start-up and warm-up of {len(seen)} workers: {warm_s:.1f} s "
        f"({batches} batch(es) of {workers} frames; excluded)"
    )
    print(
        f"   wall time {wall:.2f} s -> {frames / wall:.2f} frames/s (goal >= 1.5); "
        f"stages per frame in a worker, median {fmt_ms(median(per_frame)).strip()}"
        + (f"; {len(failed)} FAILED" if failed else "")
    )


# --------------------------------------------------------------------------- 3. photutils


def photutils_path(
    data: np.ndarray,
    *,
    threshold: float,
    fwhm_px: float,
    radius_px: float,
) -> tuple[dict[str, float], np.ndarray]:
    from astropy.stats import SigmaClip
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.background import Background2D, MedianBackground
    from photutils.detection import DAOStarFinder

    t0 = time.perf_counter()
    bkg = Background2D(
        data,
        (64, 64),
        filter_size=(3, 3),
        sigma_clip=SigmaClip(sigma=3.0),
        bkg_estimator=MedianBackground(),
    )
    subtracted = data - bkg.background
    t1 = time.perf_counter()
    table = DAOStarFinder(threshold=threshold, fwhm=fwhm_px)(subtracted)
    if table is None:
        xy = np.empty((0, 2))
    else:  # photutils 3 renamed the columns
        new = "x_centroid" in table.colnames
        x, y = ("x_centroid", "y_centroid") if new else ("xcentroid", "ycentroid")
        xy = np.column_stack([np.asarray(table[x]), np.asarray(table[y])])
    t2 = time.perf_counter()
    if len(xy):
        aperture_photometry(subtracted, CircularAperture(xy, r=radius_px))
    t3 = time.perf_counter()
    steps = {
        "Background2D": t1 - t0,
        "DAOStarFinder": t2 - t1,
        "aperture_photometry": t3 - t2,
        "total": t3 - t0,
    }
    return steps, xy


def compare_photutils(
    path: Path,
    config: Config,
    data_dir: Path,
    result: FrameResult,
    truth: np.ndarray,
    runs: int,
) -> None:
    print(f"\n3. photutils path on the same calibrated pixels, median of {runs} runs")
    try:
        import photutils
    except ImportError:
        print("   photutils is not installed (pip install -e .[bench]); skipped")
        return
    stages = build_stages(config, data_dir, reference_catalog(config))
    calibrate = next(stage for stage, _ in stages if stage.name == "calibrate")
    photometry = next(stage for stage, _ in stages if stage.name == "photometry")
    frame = calibrate.process(load_frame(path))
    data = frame.data
    m = result.metrics
    threshold = 3.0 * m["background_rms"]
    # The FWHM and main aperture the stage used are hand-offs on its frame, not stored metrics.
    measured = photometry.process(frame)
    fwhm_px, radius_px = measured.fwhm_px, measured.aperture_radius_px
    print(
        f"   photutils {photutils.__version__}; threshold {threshold:.2f} ADU (3 x the "
        f"pipeline's rms, DAOFIND's default scaling), FWHM {fwhm_px:.2f} px, aperture radius "
        f"{radius_px:.2f} px"
    )
    timings: dict[str, list[float]] = {}
    xy = np.empty((0, 2))
    for _ in range(runs):
        steps, xy = photutils_path(
            data,
            threshold=threshold,
            fwhm_px=fwhm_px,
            radius_px=radius_px,
        )
        for name, seconds in steps.items():
            timings.setdefault(name, []).append(seconds)
    # The obsctl side on the same pixels, in the same way (stage alone, no I/O).
    ours = []
    for _ in range(runs):
        t0 = time.perf_counter()
        photometry.process(frame)
        ours.append(time.perf_counter() - t0)
    close_stages(stages)
    for name, values in timings.items():
        print(f"   {name:28s} {fmt_ms(median(values))}")
    n_match, _ = match_truth(xy, truth)
    print(f"   photutils found {len(xy)} sources, {n_match} of them on a truth star")
    ratio = median(timings["total"]) / median(ours)
    print(
        f"   obsctl photometry stage     {fmt_ms(median(ours))}  (background + detect + "
        f"photometry, same pixels)"
    )
    print(f"   ratio photutils / obsctl    {ratio:7.1f} x  (goal >= 4)")


# --------------------------------------------------------------------------- main


def sanity(result: FrameResult, truth: np.ndarray) -> None:
    m = result.metrics
    sources = result.sources
    assert sources is not None
    xy = np.column_stack([sources["x"], sources["y"]])
    n_match, n_truth = match_truth(xy, truth)
    calstat = "?"
    if result.calibrated_path:
        calstat = str(fits.getheader(result.calibrated_path).get("CALSTAT", "?"))
    print("\nsanity (last latency run)")
    print(
        f"   sources {len(sources)}: {n_match} within {MATCH_RADIUS_PX} px of a truth star "
        f"({n_truth} of {len(truth)} truth stars on the frame, V <= {SKY['mag_limit']})"
    )
    print(
        f"   calibration {calstat}; FWHM {m.get('fwhm_px', math.nan):.2f} px = "
        f'{m.get("fwhm_arcsec", math.nan):.2f}" (seeing 2.2"); background '
        f"{m.get('background', math.nan):.1f} ADU, rms {m.get('background_rms', math.nan):.2f}"
    )
    print(
        f'   WCS rms {m.get("wcs_rms_arcsec", math.nan):.3f}" from '
        f"{m.get('wcs_matched', 0):.0f} stars, pointing offset "
        f"{m.get('wcs_offset_arcmin', math.nan):.2f}' found; zero point "
        f"{m.get('zero_point', math.nan):.3f} +- {m.get('zero_point_err', math.nan):.4f} "
        f"({m.get('zero_point_stars', 0):.0f} stars; 21.0 for the total flux), limiting mag "
        f"{m.get('limiting_mag', math.nan):.2f}"
    )
    if result.flags:
        print(f"   flags: {'; '.join(result.flags)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="latency runs")
    parser.add_argument("--frames", type=int, default=12, help="frames through the pool")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photutils-runs", type=int, default=3)
    args = parser.parse_args()
    try:
        from photutils import __version__ as photutils_version
    except ImportError:
        photutils_version = "not installed"
    print(
        f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; numpy {np.__version__}, sep {sep.__version__}, "
        f"astropy {astropy.__version__}, photutils {photutils_version}"
    )
    with tempfile.TemporaryDirectory(prefix="obsctl-bench-pipeline-") as tmp:
        data_dir = Path(tmp)
        config = bench_config(data_dir, args.workers)
        light, truth = prepare(data_dir, config)
        print(
            f"light frame: {SIZE}x{SIZE}, {LIGHT_S:.0f} s, {len(truth)} stars centred on it; "
            f"header WCS {math.hypot(*POINTING_ERROR_ARCMIN):.1f}' off the truth"
        )
        result = latency(light, config, data_dir, args.runs)
        sanity(result, truth)
        factory = functools.partial(build_stages, config, data_dir, reference_catalog(config))
        throughput(light, factory, data_dir, args.workers, args.frames)
        compare_photutils(light, config, data_dir, result, truth, args.photutils_runs)


if __name__ == "__main__":
    main()
