"""A simulated multi-night monitoring run of one field, rendered and reduced in-process.

Frames are rendered by the camera simulator at chosen times (five nights over ten days) with
varying seeing, transparency, sky and pointing, calibrated with the simulator's own truth,
run through the pipeline stages (SEP photometry, astrometry against the synthetic catalog,
zero point), stored with `store_result` in a real SQLite exposure log and handed to the
light-curve monitor, exactly as the daemon does after each frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsctl.config import MonitoredTargetConfig, MonitoringConfig, SimulatedSkyConfig, SiteConfig
from obsctl.frame import Frame
from obsctl.pipeline.astrometry import Astrometry
from obsctl.pipeline.photometry import SepPhotometry
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.worker import FrameResult
from obsctl.pipeline.zeropoint import ZeroPoint
from obsctl.simulators import scenes
from obsctl.simulators.render import column_bias, flat_response, render_exposure
from obsctl.simulators.sky import SyntheticCone, field_wcs
from obsctl.simulators.variables import VariableStar
from obsctl.store.exposure_log import ExposureLog, ExposureRecord
from obsctl.timeseries.alerts import Alert
from obsctl.timeseries.monitor import LightCurveMonitor

SIZE = 320
SCALE = 1.0  # arcsec/px
GAIN = 1.5
READ_NOISE_E = 3.5
EXPOSURE_S = 30.0
ZP_SIM = 21.5
SKY_E_S_PX = 3.0
RA0, DEC0 = 150.0, 20.0
FIELD = "VARFIELD"
SITE = SiteConfig(name="sim", latitude_deg=31.96, longitude_deg=-111.6, elevation_m=2096)
NIGHTS = (61000, 61001, 61003, 61006, 61010)
FRAMES_PER_NIGHT = 16
NIGHT_START, CADENCE_D = 0.12, 0.0167  # MJD fraction of the first frame (UTC), spacing

SENSOR = scenes.sensor(width_px=SIZE, height_px=SIZE, read_noise_e=READ_NOISE_E, seed=5)
SKY = SimulatedSkyConfig(seed=12, star_density_per_deg2=15000.0, mag_bright=9.0, mag_limit=18.0)
_WCS = field_wcs(RA0, DEC0, width_px=SIZE, height_px=SIZE, pixel_scale_arcsec=SCALE)


def _sky(x: float, y: float) -> tuple[float, float]:
    ra, dec = _WCS.wcs_pix2world(x, y, 0)
    return float(ra), float(dec)


SINE = VariableStar("VSINE", "sine", *_sky(90, 230), mag_v=12.8, period_d=0.6137,
                    epoch_mjd=61000.05, amplitude_mag=0.08)  # fmt: skip
TRANSIT = VariableStar("VTRANSIT", "transit", *_sky(240, 240), mag_v=12.3, period_d=2.71,
                       epoch_mjd=61003.24, depth=0.01, duration_d=0.125)  # fmt: skip
CONSTANT = VariableStar("VCONST", "constant", *_sky(230, 90), mag_v=13.0)
TRANSIENT = VariableStar("SN", "transient", *_sky(230 - 18, 90 + 14), mag_v=14.5,
                         epoch_mjd=61006.40, rise_d=0.08, fade_d=5.0)  # fmt: skip
VARIABLES = (SINE, TRANSIT, CONSTANT, TRANSIENT)
TARGETS = tuple(
    MonitoredTargetConfig(name=v.name, ra_deg=v.ra_deg % 360, dec_deg=v.dec_deg, field=FIELD)
    for v in (SINE, TRANSIT, CONSTANT)
)


@dataclass
class Run:
    """What the run produced, with the truth of every frame."""

    db: ExposureLog
    monitor: LightCurveMonitor
    exposure_ids: list[int] = field(default_factory=list)
    mjd: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


def frame_times() -> list[float]:
    return [n + NIGHT_START + k * CADENCE_D for n in NIGHTS for k in range(FRAMES_PER_NIGHT)]


def monitoring_config(**changes: object) -> MonitoringConfig:
    return MonitoringConfig(targets=TARGETS, new_source_snr=5.0, **changes)  # type: ignore[arg-type]


def run(tmp: Path, *, times: list[float] | None = None) -> Run:
    db = ExposureLog(tmp / "obsctl.sqlite")
    queue = ProcessingQueue(db)
    monitor = LightCurveMonitor(db, monitoring_config(), SITE)
    out = Run(db=db, monitor=monitor)
    stages = [
        SepPhotometry(read_noise_e=READ_NOISE_E, saturation_adu=30000.0, gain_e_per_adu=GAIN),
        Astrometry(SyntheticCone(SKY)),
        ZeroPoint(gain_e_per_adu=GAIN),
    ]
    flat = flat_response(SENSOR, x0=0, y0=0, width=SIZE, height=SIZE)
    level = SENSOR.bias_adu + 10 * SENSOR.adu_per_offset + column_bias(SENSOR)[None, :SIZE]
    rng = np.random.default_rng(8)
    for k, mjd in enumerate(times if times is not None else frame_times()):
        seeing = 3.0 * rng.uniform(0.92, 1.08)
        sky_e_s_px = SKY_E_S_PX * rng.uniform(0.8, 1.3)
        transparency = rng.uniform(-0.15, 0.0)  # thin cloud: up to 0.15 mag lost
        dx, dy = rng.normal(0.0, 3.0, 2)  # pointing jitter (px)
        ra, dec = _sky((SIZE - 1) / 2 + dx, (SIZE - 1) / 2 + dy)
        scene = scenes.sky(
            ra_deg=ra, dec_deg=dec, pixel_scale_arcsec=SCALE, seeing_arcsec=seeing,
            sky_e_s_px=sky_e_s_px, zero_point_mag=ZP_SIM + transparency, catalog_seed=SKY.seed,
            density_per_deg2=SKY.star_density_per_deg2, mag_bright=SKY.mag_bright,
            mag_limit=SKY.mag_limit, variables=VARIABLES, time_mjd=mjd,
        )  # fmt: skip
        spec = scenes.exposure(
            SENSOR, exposure_s=EXPOSURE_S, electrons_per_adu=GAIN, offset=10, seed=100 + k
        )
        raw = render_exposure(SENSOR, spec, scene).image
        data = np.ascontiguousarray((raw.astype(np.float32) - level) / flat, dtype=np.float32)
        # The header WCS is the mount's idea of the pointing: a few arcsec off.
        header = field_wcs(
            RA0 + 2 / 3600, DEC0 - 2 / 3600, width_px=SIZE, height_px=SIZE,
            pixel_scale_arcsec=SCALE,
        ).to_header()  # fmt: skip
        header.update({"EXPTIME": EXPOSURE_S, "EGAIN": GAIN, "FILTER": "V"})
        frame = Frame(data=data, header=fits.Header(header))
        for stage in stages:
            frame = stage.process(frame)
        alt = 35.0 + 50.0 * math.sin(math.pi * (mjd % 1 - 0.1) / 0.3)
        eid = db.add_exposure(
            ExposureRecord(
                night=str(math.floor(mjd)), file_path=f"raw/{k:04d}.fits", image_type="LIGHT",
                exposure_s=EXPOSURE_S, date_obs=f"mjd {mjd}", mjd_start=mjd - EXPOSURE_S / 172800,
                mjd_mid=mjd, bin_x=1, bin_y=1, target=FIELD, filter="V", ra_deg=ra,
                dec_deg=dec, airmass=1.0 / math.sin(math.radians(alt)),
            )
        )  # fmt: skip
        queue.enqueue(eid)
        store_result(
            db,
            queue,
            FrameResult(
                path="", exposure_id=eid, metrics=dict(frame.metrics), sources=frame.sources,
                flags=frame.flags,
            ),
        )  # fmt: skip
        out.alerts += monitor.process_exposure(eid)
        out.exposure_ids.append(eid)
        out.mjd.append(mjd)
        out.metrics.append(
            {
                **frame.metrics,
                "aperture_radius_px": frame.aperture_radius_px,
                "sky_e_px": sky_e_s_px * EXPOSURE_S,
                "seeing": seeing,
                "zero_point_true": ZP_SIM + transparency,
            }
        )
    return out
