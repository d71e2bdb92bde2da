"""The real/bogus classifier's labelled candidates, its training and its card (``train`` extra).

Data: `field_candidates` simulates one monitored field end to end on the pipeline's own path.
Reference frames are rendered by the camera simulator (`obsctl.simulators.render`), filed in
a temporary data directory as the daemon files them, processed by the configured stages
(calibration without masters, photometry, source classification, astrometry against the
synthetic sky, zero point) and combined by `obsctl.pipeline.reference.build_reference`;
new frames, weeks later, carry transients and go through the same stages, the difference
stage last, so that every candidate and its cutouts are exactly what the live stage makes.

Each field draws its own sky position (stars, galaxies), seeing (reference and per new
frame, Moffat beta, seeing wander), sky brightness, exposure times, dithers, galaxy density,
satellite rate and sensor defects (hot pixels, hot and dead columns, cosmic-ray rate,
bleeding). Each new frame holds its own transients at magnitudes from below the detection
limit to five magnitudes above it: supernovae on galaxies (at offsets within their light),
hostless ones in empty sky, outbursts of catalog stars and asteroids (trailed when fast).
A candidate of positive score within `MATCH_PX` of the position of a transient or of an
asteroid's track, any of them adding light, is real; every other candidate is bogus (cosmic
rays, hot pixels, bad columns, satellite trails, bleeds, residuals of stars and galaxies
under changing seeing, and every candidate fainter than the reference).

Training (`train_realbogus`, ``obsctl model train --model realbogus``): a small CNN over
`obsctl.classify.realbogus.model_inputs` (the cutouts in units of the difference's noise,
with the score, S/N and seeing), fitted on `TRAIN_FIELDS` with one thread and deterministic
algorithms, so that the same command gives the same file (the card records its sha256);
the alert threshold is the probability keeping 95 % of the `VALIDATION_FIELDS` reals; the
metrics are the exported file's, run by onnxruntime, on `TEST_FIELDS`, beside a
gradient-boosting baseline on hand-made features (`baseline_features`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray

from obsctl.classify.realbogus import (
    CUTOUT_PX,
    INPUT_SPEC_VERSION,
    N_FEATURES,
    N_PLANES,
    REALBOGUS_CARD,
    REALBOGUS_MODEL,
    RealBogusClassifier,
    border_noise,
    model_inputs,
)
from obsctl.classify.training.onnx_export import export_onnx
from obsctl.config import Config, SimulatedCameraConfig
from obsctl.devices import CameraImage, MountStatus, PierSide
from obsctl.embedded import reference_catalog
from obsctl.errors import ObsctlError
from obsctl.pipeline.difference import CANDIDATE_DTYPE
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.reference import build_reference
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import load_frame, process_file, run_stages
from obsctl.simulators import scenes
from obsctl.simulators.archive import write_config
from obsctl.simulators.artefacts import GALAXY_DTYPE, galaxies
from obsctl.simulators.camera_model import sensor_model, sky_scene
from obsctl.simulators.render import (
    RenderResult,
    SensorModel,
    SkyScene,
    render_exposure,
    scene_wcs,
)
from obsctl.simulators.sky import pixel_scale_arcsec, synthetic_catalog
from obsctl.simulators.transients import (
    Asteroid,
    Transient,
    outburst_on_star,
    supernova_on_galaxy,
)
from obsctl.store.datadir import DataDir
from obsctl.store.headers import FrameContext

__all__ = [
    "MATCH_PX",
    "NEAR_REAL_PX",
    "NEW_FRAMES",
    "REFERENCE_FRAMES",
    "TEST_FIELDS",
    "TRAIN_FIELDS",
    "VALIDATION_FIELDS",
    "CandidateSet",
    "baseline_features",
    "concatenate",
    "evaluate",
    "field_candidates",
    "generate",
    "label_candidates",
    "roc_auc",
    "threshold_at_completeness",
    "train_realbogus",
]

log = logging.getLogger(__name__)

#: Field seeds of the training, validation (the alert threshold) and held-out sets:
#: disjoint, so that no sky position, sensor or transient of one is in another.
TRAIN_FIELDS = range(100)
VALIDATION_FIELDS = range(10_000, 10_010)
TEST_FIELDS = range(20_000, 20_030)
#: Frames combined into each field's reference, and new frames differenced against it.
REFERENCE_FRAMES = 5
NEW_FRAMES = 6
#: A candidate this close (pixel) to a transient or an asteroid's track is real.
MATCH_PX = 1.5
#: A bogus candidate of positive score this close (pixel) to a transient is a split or
#: offset detection of it: bogus for the metrics, but left out of training, where it would
#: teach the network that a transient's light is bogus.
NEAR_REAL_PX = 4.0

MODEL_VERSION = "1.0.0"

_SIZE_PX = 256
_TARGET = "Real/bogus field"
_FILTER = "V"
_START = datetime(2026, 3, 1, 21, 0, tzinfo=UTC)
# New frames are taken this long after the reference: longer than a supernova's rise
# (its light is 1e-6 of the peak 5.3 rise times before) and a nova's.
_NEW_AFTER_D = 45
# The mount's reported pointing is this far off (arcsec, east and north): the astrometry
# stage has to find the field, as on the sky.
_POINTING_ERROR_ARCSEC = (15.0, -10.0)
# Transients per new frame, by kind.
_PER_FRAME = {"supernova": 4, "hostless": 3, "nova": 3, "asteroid": 2}
# Magnitudes of the added light, relative to the frame's 5-sigma limit (mag): from a little
# below the detection limit (their candidates, when any, are the faintest reals) to 5 mag
# above it.
_MAG_FROM_LIMIT = (-5.0, 0.4)
_EPOCHS = 30
_BATCH = 128
_LR = 3e-3


@dataclass(frozen=True, eq=False)
class CandidateSet:
    """Labelled difference-imaging candidates, as the difference stage made them.

    Attributes
    ----------
    cutouts : numpy.ndarray of float32
        ``(n, 3, 21, 21)``: new frame, reference, difference (new-frame ADU; NaN off the frame).
    candidates : numpy.ndarray of CANDIDATE_DTYPE
        The stage's rows.
    fwhm_px : numpy.ndarray of float64
        The new frame's seeing FWHM (pixel), per candidate.
    labels : numpy.ndarray of int64
        1 real, 0 bogus.
    kind : numpy.ndarray of str
        What a real one is (``supernova``, ``hostless``, ``nova``, ``asteroid``); ``""`` bogus.
    distance_px : numpy.ndarray of float64
        Distance to the nearest transient or asteroid track adding light (pixel; inf
        without one): a bogus candidate close to one is a split or offset detection of it.
    field_seed, frame : numpy.ndarray of int64
        The field's seed and the new frame's index in it.
    n_frames : int
        New frames differenced (also those without a candidate): the denominator of bogus
        candidates per frame.
    """

    cutouts: NDArray[np.float32]
    candidates: NDArray[Any]
    fwhm_px: NDArray[np.float64]
    labels: NDArray[np.int64]
    kind: NDArray[np.str_]
    distance_px: NDArray[np.float64]
    field_seed: NDArray[np.int64]
    frame: NDArray[np.int64]
    n_frames: int

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        """Return the candidates of each label and of each kind of real one, and the frames."""
        out = {"frames": self.n_frames, "real": int(self.labels.sum())}
        out["bogus"] = len(self) - out["real"]
        for kind in _PER_FRAME:
            out[f"real_{kind}"] = int((self.kind == kind).sum())
        return out

    def subset(self, keep: NDArray[np.bool_]) -> CandidateSet:
        """Return the candidates where ``keep`` (the frame count is kept)."""
        return CandidateSet(
            cutouts=self.cutouts[keep],
            candidates=self.candidates[keep],
            fwhm_px=self.fwhm_px[keep],
            labels=self.labels[keep],
            kind=self.kind[keep],
            distance_px=self.distance_px[keep],
            field_seed=self.field_seed[keep],
            frame=self.frame[keep],
            n_frames=self.n_frames,
        )


def concatenate(parts: Sequence[CandidateSet]) -> CandidateSet:
    """Return the candidates of several sets, in order (frames add up)."""
    if not parts:
        raise ValueError("no candidate sets given")
    return CandidateSet(
        cutouts=np.concatenate([p.cutouts for p in parts]),
        candidates=np.concatenate([p.candidates for p in parts]),
        fwhm_px=np.concatenate([p.fwhm_px for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        kind=np.concatenate([p.kind for p in parts]),
        distance_px=np.concatenate([p.distance_px for p in parts]),
        field_seed=np.concatenate([p.field_seed for p in parts]),
        frame=np.concatenate([p.frame for p in parts]),
        n_frames=sum(p.n_frames for p in parts),
    )


def _empty(n_frames: int = 0) -> CandidateSet:
    return CandidateSet(
        cutouts=np.zeros((0, 3, CUTOUT_PX, CUTOUT_PX), np.float32),
        candidates=np.zeros(0, CANDIDATE_DTYPE),
        fwhm_px=np.zeros(0),
        labels=np.zeros(0, np.int64),
        kind=np.zeros(0, "U9"),
        distance_px=np.zeros(0),
        field_seed=np.zeros(0, np.int64),
        frame=np.zeros(0, np.int64),
        n_frames=n_frames,
    )


# ------------------------------------------------------------------------------ a field


@dataclass(frozen=True)
class _Field:
    """What one field's seed draws: sky, conditions and sensor."""

    ra_deg: float
    dec_deg: float
    sky_toml: str  # extra [simulator.sky] keys
    sensor: SensorModel
    reference_exposure_s: float
    new_exposure_s: tuple[float, ...]
    new_seeing_factor: tuple[float, ...]
    dithers_arcsec: tuple[tuple[float, float], ...]  # reference frames, then new frames


def _draw_field(seed: int, config_sensor: SensorModel) -> _Field:
    rng = np.random.default_rng([seed, 0x5EA1])
    n = REFERENCE_FRAMES + NEW_FRAMES
    seeing = float(rng.uniform(1.6, 3.6))
    satellites = float(rng.uniform(20.0, 80.0)) if rng.random() < 0.4 else 0.0
    sky_toml = (
        f"seeing_arcsec = {seeing:.3f}\n"
        f"moffat_beta = {rng.uniform(2.5, 4.5):.3f}\n"
        f"seeing_variation_rms = {rng.choice([0.0, rng.uniform(0.05, 0.2)]):.3f}\n"
        f"sky_mag_arcsec2 = {rng.uniform(18.5, 21.5):.3f}\n"
        f"galaxy_density_r21_per_deg2 = {rng.uniform(3000.0, 15000.0):.1f}\n"
        f"satellite_rate_per_hour = {satellites:.1f}\n"
    )
    sensor = replace(
        config_sensor,
        seed=int(rng.integers(1, 2**31)),
        hot_pixel_fraction=float(rng.uniform(1e-4, 1e-3)),
        cosmic_rate_cm2_s=float(rng.uniform(0.01, 0.08)),
        hot_columns=int(rng.integers(0, 3)),
        dead_columns=int(rng.integers(0, 3)),
        bleeds=bool(rng.random() < 0.5),
    )
    return _Field(
        ra_deg=float(rng.uniform(0.0, 360.0)),
        dec_deg=float(np.degrees(np.arcsin(rng.uniform(-0.6, 0.85)))),
        sky_toml=sky_toml,
        sensor=sensor,
        reference_exposure_s=float(rng.uniform(30.0, 90.0)),
        new_exposure_s=tuple(float(t) for t in rng.uniform(20.0, 120.0, NEW_FRAMES)),
        # Worse or better seeing than the reference's frames: PSF-matching residuals.
        new_seeing_factor=tuple(float(f) for f in rng.uniform(0.8, 1.6, NEW_FRAMES)),
        dithers_arcsec=tuple((float(e), float(w)) for e, w in rng.uniform(-10.0, 10.0, (n, 2))),
    )


def _offset(
    ra_deg: float, dec_deg: float, east_arcsec: float, north_arcsec: float
) -> tuple[float, float]:
    return (
        ra_deg + east_arcsec / 3600.0 / math.cos(math.radians(dec_deg)),
        dec_deg + north_arcsec / 3600.0,
    )


def _limiting_mag(scene: SkyScene, sensor: SensorModel, exposure_s: float) -> float:
    """Return the 5-sigma point-source limit of a frame (mag), sky and read noise only."""
    fwhm_px = scene.seeing_arcsec / scene.pixel_scale_arcsec
    sigma_e = math.sqrt(scene.sky_e_s_px * exposure_s + sensor.read_noise_e**2)
    # A Gaussian PSF's noise-equivalent area, 4 pi s^2.
    flux_e = 5.0 * sigma_e * math.sqrt(4.0 * math.pi) * fwhm_px / 2.3548
    dimming = scene.extinction_mag_per_airmass * scene.airmass
    return scene.zero_point_mag - dimming - 2.5 * math.log10(flux_e / exposure_s)


def _hostless(name: str, ra_deg: float, dec_deg: float, peak_mag_v: float, mjd: float) -> Transient:
    """Return a supernova without a visible host: an unrendered R = 30 'galaxy' under it."""
    hosts = np.zeros(1, GALAXY_DTYPE)
    hosts["id"], hosts["ra_deg"], hosts["dec_deg"] = -1, ra_deg, dec_deg
    for band in ("b", "v", "r", "i"):
        hosts[f"mag_{band}"] = 30.0
    return supernova_on_galaxy(name, hosts[0], peak_mag_v=peak_mag_v, peak_mjd=mjd)


def _transients(
    rng: np.random.Generator,
    scene: SkyScene,
    frame_wcs: Any,
    limit_mag: float,
    mjd: float,
    tag: str,
) -> tuple[tuple[Transient, ...], tuple[Asteroid, ...]]:
    """Draw one new frame's transients and asteroids (positions inside it, 12 px margin)."""
    margin = 12.0
    radius_deg = _SIZE_PX * scene.pixel_scale_arcsec / 3600.0 * 0.75

    def inside(ra: float, dec: float) -> bool:
        x, y = frame_wcs.all_world2pix([ra], [dec], 0)
        return bool(margin < x[0] < _SIZE_PX - 1 - margin and margin < y[0] < _SIZE_PX - 1 - margin)

    def magnitude() -> float:
        return float(limit_mag + rng.uniform(*_MAG_FROM_LIMIT))

    out: list[Transient] = []
    hosts = galaxies(
        scene.ra_deg, scene.dec_deg, radius_deg, seed=scene.catalog_seed,
        density_r21_per_deg2=scene.galaxy_density_r21_per_deg2,
        mag_bright=scene.galaxy_mag_bright, mag_limit=scene.galaxy_mag_limit,
    )  # fmt: skip
    hosts = hosts[[inside(float(g["ra_deg"]), float(g["dec_deg"])) for g in hosts]]
    if len(hosts):
        for i in rng.choice(len(hosts), min(len(hosts), _PER_FRAME["supernova"]), replace=False):
            host = hosts[i]
            # Within the galaxy's light: up to 1.5 half-light radii, nuclear ones included.
            offset = float(host["r_eff_arcsec"]) * float(rng.uniform(0.0, 1.5))
            out.append(
                supernova_on_galaxy(
                    f"{tag} sn{i}", host, peak_mag_v=magnitude(), peak_mjd=mjd,
                    offset_arcsec=offset, offset_pa_deg=float(rng.uniform(0.0, 360.0)),
                )
            )  # fmt: skip
    for i in range(_PER_FRAME["hostless"]):
        x, y = rng.uniform(margin, _SIZE_PX - 1 - margin, 2)
        ra, dec = frame_wcs.all_pix2world([x], [y], 0)
        out.append(_hostless(f"{tag} hl{i}", float(ra[0]), float(dec[0]), magnitude(), mjd))
    stars = synthetic_catalog(
        scene.ra_deg, scene.dec_deg, radius_deg, seed=scene.catalog_seed,
        density_per_deg2=scene.density_per_deg2, mag_bright=scene.mag_bright,
        mag_limit=scene.mag_limit,
    )  # fmt: skip
    on_frame = [
        i for i in range(len(stars))
        if inside(float(stars.ra_deg[i]), float(stars.dec_deg[i]))
        and float(stars.mag_v[i]) > scene.mag_bright + 3.0  # not saturated
    ]  # fmt: skip
    for k, i in enumerate(rng.permutation(on_frame)[: _PER_FRAME["nova"]]):
        host = stars.take(np.array([i]))
        # The outburst adds light of `magnitude()`: amplitude = 2.5 log10(1 + excess).
        excess = 10.0 ** (-0.4 * (magnitude() - float(host.mag_v[0])))
        out.append(
            outburst_on_star(
                f"{tag} nova{k}", "nova", host, amplitude_mag=2.5 * math.log10(1.0 + excess),
                epoch_mjd=mjd,
            )
        )  # fmt: skip
    asteroids: list[Asteroid] = []
    for i in range(_PER_FRAME["asteroid"]):
        x, y = rng.uniform(margin, _SIZE_PX - 1 - margin, 2)
        ra, dec = frame_wcs.all_pix2world([x], [y], 0)
        # Main-belt (barely moving) to fast ones, trailed over the exposure; at most 10
        # arcsec/min: within a cutout, a longer trail is indistinguishable from a satellite's.
        rate = float(10.0 ** rng.uniform(-0.7, 1.0))
        asteroids.append(
            Asteroid(
                name=f"{tag} ast{i}", ra_deg=float(ra[0]), dec_deg=float(dec[0]),
                epoch_mjd=mjd, rate_arcsec_min=rate, pa_deg=float(rng.uniform(0.0, 360.0)),
                mag_v=magnitude(),
            )
        )  # fmt: skip
    return tuple(out), tuple(asteroids)


def _segment_distance(
    px: NDArray[np.float64],
    py: NDArray[np.float64],
    ends: tuple[float, float, float, float],
) -> NDArray[np.float64]:
    """Return distances (pixel) from points to a segment ``(x0, y0, x1, y1)``."""
    x0, y0, x1, y1 = ends
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    t = np.zeros_like(px) if length2 == 0 else ((px - x0) * dx + (py - y0) * dy) / length2
    t = np.clip(t, 0.0, 1.0)
    return np.asarray(np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)), np.float64)


def label_candidates(
    candidates: NDArray[Any], truth: RenderResult
) -> tuple[NDArray[np.int64], NDArray[np.str_], NDArray[np.float64]]:
    """Return each candidate's label (1 real), the kind of its real source and its distance.

    Parameters
    ----------
    candidates : numpy.ndarray of CANDIDATE_DTYPE
        Detections (zero-based pixel ``x``, ``y`` of the new frame).
    truth : RenderResult
        The new frame's render: its transients and asteroids with positions.

    Returns
    -------
    labels : numpy.ndarray of int64
        1 for a positive score within `MATCH_PX` of a transient or an asteroid's track
        adding light, else 0.
    kind : numpy.ndarray of str
        ``supernova`` (on a galaxy), ``hostless``, ``nova`` (on a star) or ``asteroid``;
        ``""`` for bogus ones.
    distance_px : numpy.ndarray of float64
        Distance to the nearest transient or asteroid track adding light (pixel; inf
        without one).
    """
    x = candidates["x"].astype(np.float64)
    y = candidates["y"].astype(np.float64)
    best = np.full(len(x), np.inf)
    kind = np.zeros(len(x), "U9")
    for t in truth.transients:
        if not float(t["flux_e"]) > 0.0:
            continue
        d = np.hypot(x - float(t["x"]), y - float(t["y"]))
        name = str(t["kind"])
        if name == "supernova" and int(t["host_id"]) < 0:
            name = "hostless"
        closer = d < best
        best[closer], kind[closer] = d[closer], name
    for a in truth.asteroids:
        if not float(a["flux_e"]) > 0.0:
            continue
        ends = (float(a["x_start"]), float(a["y_start"]), float(a["x_end"]), float(a["y_end"]))
        d = _segment_distance(x, y, ends)
        closer = d < best
        best[closer], kind[closer] = d[closer], "asteroid"
    # Real is light added where a transient is: a negative score there is a subtraction
    # residual (a nova's star under worse seeing), no brightening to alert on.
    real = (best <= MATCH_PX) & (candidates["score"] > 0)
    kind[~real] = ""
    return real.astype(np.int64), kind, best


class _FieldRun:
    """One field's temporary data directory, config, stages and exposure log."""

    def __init__(self, root: Path, field: _Field) -> None:
        self.config: Config = write_config(
            root / "obsctl.toml", root / "data", size_px=_SIZE_PX, workers=1,
            extra=field.sky_toml,
        )  # fmt: skip
        self.data_dir = DataDir(self.config.data.directory)
        self.stages = build_stages(self.config, self.data_dir, reference_catalog(self.config))
        self.field = field
        assert self.config.simulator is not None
        camera = self.config.simulator.camera
        self.scale = pixel_scale_arcsec(camera.pixel_size_um, self.config.telescope.focal_length_mm)
        self.frame_number = 0

    def scene(self, k: int, when: datetime, exposure_s: float, **kw: Any) -> SkyScene:
        """Return the scene of frame ``k`` (its dither), at the exposure's middle."""
        assert self.config.simulator is not None
        ra, dec = _offset(self.field.ra_deg, self.field.dec_deg, *self.field.dithers_arcsec[k])
        return sky_scene(
            self.config.simulator.sky, ra_deg=ra, dec_deg=dec, rotation_deg=0.0,
            pixel_scale_arcsec=self.scale, band=_FILTER,
            time_mjd=Time(when).mjd + exposure_s / 2.0 / 86400.0, **kw,
        )  # fmt: skip

    def store(
        self, scene: SkyScene, when: datetime, exposure_s: float, seed: int
    ) -> tuple[int, Path, RenderResult]:
        """Render a frame, file it as the daemon does; return its exposure id, file, render."""
        assert self.config.simulator is not None
        camera = self.config.simulator.camera
        sensor = self.field.sensor
        spec = scenes.exposure(
            sensor, exposure_s=exposure_s, electrons_per_adu=camera.electrons_per_adu, seed=seed
        )
        result = render_exposure(sensor, spec, scene)
        image = result.image.astype(np.uint16, copy=False)
        meta = scenes.image_metadata(
            spec, sensor, start_time=when, sensor_name=camera.sensor_name, camera_name=camera.name
        )
        ra, dec = _offset(self.field.ra_deg, self.field.dec_deg, *_POINTING_ERROR_ARCSEC)
        mount = MountStatus(
            ra_deg=ra, dec_deg=dec, alt_deg=62.0, az_deg=190.0, slewing=False, tracking=True,
            at_park=False, pier_side=PierSide.WEST, sidereal_time_h=None,
        )  # fmt: skip
        self.frame_number += 1
        ctx = FrameContext(
            image=CameraImage(data=image, metadata=meta), image_type="LIGHT",
            site=self.config.site, telescope=self.config.telescope,
            frame_number=self.frame_number, start_time=when, target=_TARGET,
            filter_name=_FILTER, mount=mount,
        )  # fmt: skip
        log_db = self.data_dir.open_log()
        try:
            path, _ = scenes.store_raw(self.data_dir.raw_store(), log_db, ctx)
            relative = self.data_dir.relative(path)
            (row,) = [r for r in log_db.exposures(image_type="LIGHT") if r["file_path"] == relative]
        finally:
            log_db.close()
        return int(row["id"]), path, result

    def build_reference(self, seed: int) -> bool:
        """Take, process and combine the reference frames; False when it cannot be built."""
        log_db = self.data_dir.open_log()
        queue = ProcessingQueue(log_db)
        try:
            for k in range(REFERENCE_FRAMES):
                when = _START + timedelta(minutes=3 * k)
                t = self.field.reference_exposure_s
                eid, path, _ = self.store(self.scene(k, when, t), when, t, seed * 1000 + k)
                queue.enqueue(eid)
                result = process_file(str(path), eid, stages=self.stages, data_dir=self.data_dir)
                store_result(log_db, queue, result, self.data_dir)
            build_reference(self.data_dir, log_db, _TARGET, _FILTER)
        except ObsctlError as exc:
            log.info("field %d: no reference (%s)", seed, exc)
            return False
        finally:
            log_db.close()
        return True


def _new_frame(run: _FieldRun, rng: np.random.Generator, seed: int, j: int) -> CandidateSet | None:
    """Take new frame ``j`` with its transients, run the stages; None when it fails."""
    field = run.field
    k = REFERENCE_FRAMES + j
    when = _START + timedelta(days=_NEW_AFTER_D, minutes=3 * j)
    t = field.new_exposure_s[j]
    base = run.scene(k, when, t)
    base = replace(base, seeing_arcsec=base.seeing_arcsec * field.new_seeing_factor[j])
    transients, asteroids = _transients(
        rng, base, scene_wcs(base, field.sensor), _limiting_mag(base, field.sensor, t),
        float(base.time_mjd or 0.0), f"f{seed}/{j}",
    )  # fmt: skip
    scene = replace(base, transients=transients, asteroids=asteroids)
    eid, path, truth = run.store(scene, when, t, seed * 1000 + k)
    frame, failed, reason, _ = run_stages(load_frame(path, eid), run.stages)
    if failed is not None or frame.difference is None or frame.fwhm_px is None:
        log.info("field %d frame %d: no difference (%s; %s)", seed, j, reason,
                 ", ".join(frame.flags))  # fmt: skip
        return None
    outcome = frame.difference
    rows = outcome.candidates[: outcome.detections]
    labels, kind, distance = label_candidates(rows, truth)
    n = len(rows)
    return CandidateSet(
        cutouts=outcome.cutouts[:n],
        candidates=rows,
        fwhm_px=np.full(n, frame.fwhm_px),
        labels=labels,
        kind=kind,
        distance_px=distance,
        field_seed=np.full(n, seed, np.int64),
        frame=np.full(n, j, np.int64),
        n_frames=1,
    )


def field_candidates(seed: int) -> CandidateSet:
    """Simulate one field on the pipeline's path; return its new frames' labelled candidates.

    Parameters
    ----------
    seed : int
        The field's seed (sky position, conditions, sensor, transients, noise).

    Returns
    -------
    CandidateSet
        The candidates of its `NEW_FRAMES` new frames. Frames whose processing failed (too
        few stars for the zero point or the PSFs) are left out and not counted, as are all
        when no reference could be built.
    """
    rng = np.random.default_rng([seed, 0x7A4])
    field = _draw_field(seed, sensor_model(SimulatedCameraConfig(width_px=_SIZE_PX,
                                                                 height_px=_SIZE_PX)))  # fmt: skip
    # The stages' numpy warnings (an all-NaN median where no reference frame covers a
    # pixel) are expected; ignoring them keeps the data the same under any warning filter
    # (pytest turns them into errors).
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="obsctl-rb-") as tmp:
        warnings.simplefilter("ignore", RuntimeWarning)
        run = _FieldRun(Path(tmp), field)
        if not run.build_reference(seed):
            return _empty()
        parts = [_new_frame(run, rng, seed, j) for j in range(NEW_FRAMES)]
    return concatenate([p for p in parts if p is not None] or [_empty()])


def generate(seeds: Iterable[int], *, workers: int = 1) -> CandidateSet:
    """Return the labelled candidates of many fields, concatenated in seed order.

    Parameters
    ----------
    seeds : iterable of int
        Field seeds.
    workers : int, optional
        Processes simulating fields (the result does not depend on it).

    Returns
    -------
    CandidateSet
        All candidates.
    """
    todo = [int(seed) for seed in seeds]
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(field_candidates, todo))
    else:
        parts = [field_candidates(seed) for seed in todo]
    return concatenate(parts)


# ----------------------------------------------------------------------------- training


def _tensors(data: CandidateSet) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    return model_inputs(
        data.cutouts, data.candidates["score"], data.candidates["snr"], data.fwhm_px
    )


def _network() -> Any:
    import torch
    from torch import nn

    class RealBogusNet(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (extra)
        def __init__(self) -> None:
            super().__init__()
            # 21 -> 19 -> 17 -> pool 8 -> 8 -> pool 4: a receptive field of about the cutout.
            self.conv = nn.Sequential(
                nn.Conv2d(N_PLANES, 16, 3),
                nn.ReLU(),
                nn.Conv2d(16, 32, 3),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Sequential(
                nn.Linear(32 * 4 * 4 + N_FEATURES, 64),
                nn.ReLU(),
                nn.Dropout(0.2),
                nn.Linear(64, 1),
            )

        def forward(self, cutouts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
            x = self.conv(cutouts).flatten(1)
            logit: torch.Tensor = self.head(torch.cat([x, features], dim=1)).squeeze(1)
            return logit

    return RealBogusNet()


def _augment(cutouts: Any, generator: Any) -> Any:
    """Apply one of the eight flips and right-angle rotations to the batch."""
    import torch

    k = int(torch.randint(0, 4, (1,), generator=generator))
    out = torch.rot90(cutouts, k, dims=(2, 3))
    if bool(torch.randint(0, 2, (1,), generator=generator)):
        out = torch.flip(out, dims=(3,))
    return out


def _fit(train: CandidateSet, *, seed: int, epochs: int) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = _network()
    planes, features = _tensors(train)
    x, f = torch.from_numpy(planes), torch.from_numpy(features)
    y = torch.from_numpy(train.labels.astype(np.float32))
    # Reals are about a fifth of the candidates; weighting them up evens the two classes'
    # share of the loss, so that the faint reals near the threshold are not given up.
    n_real = max(1, int(train.labels.sum()))
    weight = torch.tensor((len(train) - n_real) / n_real, dtype=torch.float32)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    optimiser = torch.optim.AdamW(net.parameters(), lr=_LR, weight_decay=1e-4)
    steps = max(1, epochs * math.ceil(len(train) / _BATCH))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=_LR, total_steps=steps)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for start in range(0, len(train), _BATCH):
            idx = order[start : start + _BATCH]
            optimiser.zero_grad()
            loss = loss_fn(net(_augment(x[idx], generator), f[idx]), y[idx])
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        log.info("epoch %d: loss %.4f", epoch + 1, total / max(1, len(train)))
    net.eval()
    return net


def _export(net: Any, path: Path, threshold: float) -> None:
    import torch
    from torch import nn

    class Probability(nn.Module):  # type: ignore[misc]  # torch is Any to mypy (extra)
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, cutouts: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(cutouts, features))

    example = (torch.zeros(2, N_PLANES, CUTOUT_PX, CUTOUT_PX), torch.zeros(2, N_FEATURES))
    export_onnx(
        Probability().eval(),
        example,
        path,
        output="real",
        producer="obsctl model train --model realbogus",
        version=MODEL_VERSION,
        doc="obsctl real/bogus classifier of difference-imaging candidates",
        metadata=(
            ("version", MODEL_VERSION),
            ("input_spec", str(INPUT_SPEC_VERSION)),
            ("threshold", repr(float(threshold))),
        ),
    )


def _near_real(data: CandidateSet) -> NDArray[np.bool_]:
    """Return the bogus candidates of positive score within `NEAR_REAL_PX` of a transient."""
    return np.asarray(
        (data.labels == 0) & (data.candidates["score"] > 0) & (data.distance_px < NEAR_REAL_PX)
    )


def _predict_torch(net: Any, data: CandidateSet) -> NDArray[np.float64]:
    import torch

    planes, features = _tensors(data)
    with torch.no_grad():
        logit = net(torch.from_numpy(planes), torch.from_numpy(features))
    return np.asarray(torch.sigmoid(logit).numpy(), dtype=np.float64)


# --------------------------------------------------------------------------- evaluation


def roc_auc(probability: NDArray[np.float64], labels: NDArray[np.int64]) -> float:
    """Return the area under the ROC curve (the Mann-Whitney statistic, ties counted half).

    Parameters
    ----------
    probability : numpy.ndarray
        Scores; higher means real.
    labels : numpy.ndarray
        1 real, 0 bogus.

    Returns
    -------
    float
        The AUC; NaN without both classes.
    """
    p = np.asarray(probability, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_real, n_bogus = int(y.sum()), int((~y).sum())
    if n_real == 0 or n_bogus == 0:
        return math.nan
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    # Average ranks over ties.
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    return float((ranks[y].sum() - n_real * (n_real + 1) / 2.0) / (n_real * n_bogus))


def threshold_at_completeness(
    probability: NDArray[np.float64], labels: NDArray[np.int64], completeness: float = 0.95
) -> float:
    """Return the highest threshold keeping at least ``completeness`` of the reals above it."""
    real = np.sort(np.asarray(probability, dtype=np.float64)[np.asarray(labels) == 1])
    if len(real) == 0:
        return math.nan
    return float(real[math.floor((1.0 - completeness) * len(real))])


def _roc_points(
    probability: NDArray[np.float64], labels: NDArray[np.int64]
) -> list[dict[str, float]]:
    """Return the ROC at thresholds giving completeness from 50 % to 100 %."""
    points = []
    for completeness in (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 1.0):
        t = threshold_at_completeness(probability, labels, completeness)
        above = probability >= t
        points.append(
            {
                "threshold": round(t, 6),
                "completeness": round(float(above[labels == 1].mean()), 4),
                "false_positive_rate": round(float(above[labels == 0].mean()), 5),
            }
        )
    return points


def evaluate(
    probability: NDArray[np.float64], data: CandidateSet, threshold: float
) -> dict[str, Any]:
    """Return the metrics of scores on a labelled set at an alert threshold.

    Parameters
    ----------
    probability : numpy.ndarray
        Each candidate's probability of being real.
    data : CandidateSet
        The candidates, labels and frame count.
    threshold : float
        The alert threshold (probability).

    Returns
    -------
    dict
        AUC, ROC points, completeness (overall, per kind, per score range) and bogus
        candidates above the threshold per frame, and the held-out threshold of exactly
        95 % completeness with its bogus per frame.
    """
    p = np.asarray(probability, dtype=np.float64)
    y = data.labels
    above = p >= threshold
    frames = max(1, data.n_frames)
    t95 = threshold_at_completeness(p, y)
    score = data.candidates["score"]
    by_score = {}
    for low, high in ((5, 7), (7, 10), (10, 20), (20, 50), (50, math.inf)):
        sel = (y == 1) & (score >= low) & (score < high)
        by_score[f"{low}-{high}"] = {
            "n": int(sel.sum()),
            "completeness": round(float(above[sel].mean()), 4) if sel.any() else None,
        }
    return {
        "n_real": int(y.sum()),
        "n_bogus": int((y == 0).sum()),
        "frames": data.n_frames,
        "auc": round(roc_auc(p, y), 5),
        "threshold": round(threshold, 6),
        "completeness": round(float(above[y == 1].mean()), 4),
        "bogus_above_threshold": int((above & (y == 0)).sum()),
        "bogus_above_threshold_near_a_transient": int((above & _near_real(data)).sum()),
        "bogus_per_frame": round(float((above & (y == 0)).sum()) / frames, 4),
        "completeness_by_kind": {
            kind: round(float(above[data.kind == kind].mean()), 4)
            for kind in _PER_FRAME
            if (data.kind == kind).any()
        },
        "completeness_by_score": by_score,
        "threshold_95_on_this_set": round(t95, 6),
        "bogus_per_frame_at_95": round(float(((p >= t95) & (y == 0)).sum()) / frames, 4),
        "roc": _roc_points(p, y),
    }


# ----------------------------------------------------------------------------- baseline


def baseline_features(data: CandidateSet) -> NDArray[np.float64]:
    """Return hand-made features of each candidate for the gradient-boosting baseline.

    The score and S/N, the seeing, the difference's peak, concentration (3 x 3 over 7 x 7
    flux), second-moment radius over the FWHM, deepest negative pixel (dipoles), elongation
    along rows and columns (bad columns, trails), the new and reference centres, all in units
    of the border noise, and the share of the cutout off the frame.
    """
    c = CUTOUT_PX // 2
    sigma = border_noise(data.cutouts[:, 2])[:, None, None]
    new, ref, diff = (np.nan_to_num(data.cutouts[:, k] / sigma) for k in range(3))
    core7 = diff[:, c - 3 : c + 4, c - 3 : c + 4]
    core3 = diff[:, c - 1 : c + 2, c - 1 : c + 2]
    positive = np.clip(core7, 0.0, None)
    yy, xx = np.mgrid[-3:4, -3:4]
    total = positive.sum(axis=(1, 2)) + 1e-9
    r2 = (positive * (xx**2 + yy**2)).sum(axis=(1, 2)) / total
    along_x = (positive * xx**2).sum(axis=(1, 2)) / total
    along_y = (positive * yy**2).sum(axis=(1, 2)) / total
    return np.column_stack(
        [
            data.candidates["score"],
            np.nan_to_num(data.candidates["snr"]),
            data.fwhm_px,
            core3.max(axis=(1, 2)),
            core3.sum(axis=(1, 2)) / (np.abs(core7.sum(axis=(1, 2))) + 1e-9),
            np.sqrt(r2) / data.fwhm_px,
            core7.min(axis=(1, 2)),
            (along_x + 1e-3) / (along_y + 1e-3),
            new[:, c, c],
            ref[:, c, c],
            np.isnan(data.cutouts[:, 2]).mean(axis=(1, 2)),
        ]
    )


def _baseline(train: CandidateSet, test: CandidateSet, seed: int) -> NDArray[np.float64]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=seed)
    model.fit(baseline_features(train), train.labels)
    return np.asarray(model.predict_proba(baseline_features(test))[:, 1], dtype=np.float64)


# ------------------------------------------------------------------------------- recipe


def _timing(model_path: Path, data: CandidateSet) -> dict[str, float]:
    """Return inference times on one thread: per candidate (batches of 200) and per batch."""
    classifier = RealBogusClassifier(model_path, threads=1)
    n = min(200, len(data))
    cutouts, rows, fwhm = data.cutouts[:n], data.candidates[:n], data.fwhm_px[:n]
    classifier.score(cutouts, rows, fwhm)  # warm-up: the first run allocates
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        classifier.score(cutouts, rows, fwhm)
    batch_s = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for i in range(n):
        classifier.score(cutouts[i : i + 1], rows[i : i + 1], fwhm[i : i + 1])
    single_s = (time.perf_counter() - start) / max(1, n)
    return {
        "batch_candidates": n,
        "batch_ms": round(1e3 * batch_s, 3),
        "per_candidate_in_batch_ms": round(1e3 * batch_s / max(1, n), 4),
        "one_candidate_ms": round(1e3 * single_s, 3),
    }


def train_realbogus(
    out_dir: str | Path | None = None,
    *,
    seed: int = 0,
    train_fields: Sequence[int] = TRAIN_FIELDS,
    validation_fields: Sequence[int] = VALIDATION_FIELDS,
    test_fields: Sequence[int] = TEST_FIELDS,
    epochs: int = _EPOCHS,
    workers: int | None = None,
) -> dict[str, Any]:
    """Simulate the fields, train, export the ONNX model, evaluate it; write model and card.

    Parameters
    ----------
    out_dir : str or pathlib.Path, optional
        Folder for ``realbogus.onnx`` and ``realbogus_card.json``; by default the package's
        own (what ships).
    seed : int, optional
        Seed of the weight initialisation, batch order and baseline (the data seeds are
        the field seeds).
    train_fields, validation_fields, test_fields : sequence of int, optional
        Field seeds (disjoint): training, the alert threshold (95 % completeness), held out.
    epochs : int, optional
        Training epochs.
    workers : int or None, optional
        Processes simulating fields (the data do not depend on it); by default up to two.

    Returns
    -------
    dict
        The model card.
    """
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = Path(out_dir) if out_dir is not None else REALBOGUS_MODEL.parent
    model_path = folder / REALBOGUS_MODEL.name
    card_path = folder / REALBOGUS_CARD.name
    workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))

    start = time.perf_counter()
    train = generate(train_fields, workers=workers)
    valid = generate(validation_fields, workers=workers)
    test = generate(test_fields, workers=workers)
    data_s = time.perf_counter() - start
    log.info("data: %s train, %s validation, %s test in %.0f s", train.counts(),
             valid.counts(), test.counts(), data_s)  # fmt: skip

    start = time.perf_counter()
    net = _fit(train.subset(~_near_real(train)), seed=seed, epochs=epochs)
    fit_s = time.perf_counter() - start
    threshold = threshold_at_completeness(_predict_torch(net, valid), valid.labels)
    _export(net, model_path, threshold)

    # The metrics are the shipped file's, run by onnxruntime as the pipeline will.
    classifier = RealBogusClassifier(model_path)
    probability = classifier.score(test.cutouts, test.candidates, test.fwhm_px)
    metrics = evaluate(probability.astype(np.float64), test, threshold)
    baseline = _baseline(train, test, seed)
    baseline_metrics = evaluate(baseline, test, threshold_at_completeness(baseline, test.labels))
    card: dict[str, Any] = {
        "name": "obsctl real/bogus classifier",
        "version": MODEL_VERSION,
        "file": model_path.name,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "size_bytes": model_path.stat().st_size,
        "input_spec": {
            "version": INPUT_SPEC_VERSION,
            "inputs": {
                "cutouts": ["batch", N_PLANES, CUTOUT_PX, CUTOUT_PX],
                "features": ["batch", N_FEATURES],
            },
            "output": {"real": ["batch"]},
            "definition": "obsctl.classify.realbogus.model_inputs",
        },
        "threshold": {
            "value": threshold,
            "definition": "95 % of the validation fields' real candidates score at or above it",
        },
        "training": {
            "generator": "obsctl.classify.training.realbogus.field_candidates",
            "recipe": _RECIPE,
            "train_field_seeds": _seed_span(train_fields),
            "validation_field_seeds": _seed_span(validation_fields),
            "test_field_seeds": _seed_span(test_fields),
            "train": train.counts(),
            "train_left_out_near_a_transient": int(_near_real(train).sum()),
            "validation": valid.counts(),
            "test": test.counts(),
            "seed": seed,
            "epochs": epochs,
            "batch": _BATCH,
            "learning_rate": _LR,
            "torch": torch.__version__,
            "data_seconds": round(data_s, 1),
            "fit_seconds": round(fit_s, 1),
        },
        "metrics_test": metrics,
        "baseline_test": {
            "model": "sklearn HistGradientBoostingClassifier on baseline_features "
            "(threshold: 95 % completeness on the test set itself)",
            **baseline_metrics,
        },
        "timing_one_thread": _timing(model_path, test),
    }
    card_path.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return card


def _seed_span(seeds: Sequence[int]) -> list[int]:
    """Return ``[first, stop]`` of a seed range (the card's compact form), or the seeds."""
    if isinstance(seeds, range) and seeds.step == 1:
        return [seeds.start, seeds.stop]
    return [int(s) for s in seeds]


_RECIPE = (
    f"per field: {REFERENCE_FRAMES} reference frames and {NEW_FRAMES} new frames "
    f"{_NEW_AFTER_D} days later ({_SIZE_PX} x {_SIZE_PX} px, 0.97 arcsec/px), rendered by "
    "obsctl.simulators.render, filed and processed by the configured stages "
    "(no masters), the reference built by obsctl.pipeline.reference.build_reference, the "
    "new frames differenced by the difference stage; the field draws its sky position, "
    "seeing 1.6-3.6 arcsec (new frames x 0.8-1.6), Moffat beta 2.5-4.5, seeing wander, sky "
    "18.5-21.5 mag/arcsec2, galaxies 3000-15000 per deg2 (R < 21), satellites in 40 %, hot "
    "pixels 1e-4-1e-3, 0-2 hot and dead columns, cosmic rays 0.01-0.08 /cm2/s, bleeding in "
    "half, exposures 30-90 s (reference) and 20-120 s, dithers of 10 arcsec; per new frame "
    + ", ".join(f"{n} {kind}" for kind, n in _PER_FRAME.items())
    + " transients from 5 mag brighter than the frame's 5-sigma limit to 0.4 mag fainter; "
    f"real: positive score within {MATCH_PX} px of a transient or an asteroid's track; "
    "CNN (conv 16, 32, pool, 32, pool; dense 64 with the features), BCE weighted to balance "
    "the classes, flips and right-angle rotations, AdamW with a one-cycle schedule"
)
