"""Build the configured stage list: an explicit map from a stage name to its factory.

`build_stages` runs once in every worker process, so it takes only picklable arguments (the
config and the data directory) and opens its own read-only handles there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from obsctl.config import Config, SimulatedSkyConfig
from obsctl.pipeline.stage import FailurePolicy, Stage

__all__ = ["DB_NAME", "REFCAT_NAME", "SyntheticCone", "build_stages"]

log = logging.getLogger(__name__)

DB_NAME = "obsctl.sqlite"
REFCAT_NAME = "catalog.sqlite"


@dataclass(frozen=True)
class SyntheticCone:
    """Reference stars from the simulators' synthetic sky, generated on demand.

    With simulated cameras the sky is this deterministic catalog, so the pipeline reads it
    as it would read a catalog file, with no import step and nothing downloaded.
    """

    sky: SimulatedSkyConfig

    def __call__(self, ra_deg: float, dec_deg: float, radius_deg: float) -> NDArray[Any]:
        """Return the stars within ``radius_deg`` of the centre (ConeQuery)."""
        from obsctl.simulators.sky import synthetic_catalog

        cat = synthetic_catalog(
            ra_deg,
            dec_deg,
            radius_deg,
            seed=self.sky.seed,
            density_per_deg2=self.sky.star_density_per_deg2,
            mag_bright=self.sky.mag_bright,
            mag_limit=self.sky.mag_limit,
        )
        out = np.zeros(
            len(cat),
            dtype=[
                ("ra_deg", "f8"),
                ("dec_deg", "f8"),
                ("mag_b", "f8"),
                ("mag_v", "f8"),
                ("mag_r", "f8"),
                ("mag_i", "f8"),
            ],
        )
        out["ra_deg"], out["dec_deg"] = cat.ra_deg, cat.dec_deg
        out["mag_b"], out["mag_v"], out["mag_r"], out["mag_i"] = (
            cat.mag_b,
            cat.mag_v,
            cat.mag_r,
            cat.mag_i,
        )
        return out[np.argsort(out["mag_v"])]


def _calibrate(config: Config, data_dir: Path) -> Stage:
    from obsctl.calibration.masters import MasterSelection
    from obsctl.pipeline.calibrate import Calibrate

    db = data_dir / DB_NAME
    cal = config.calibration
    if not db.exists():
        # Files from elsewhere, no exposure log: no masters, the frame is flagged.
        return Calibrate(lambda header: MasterSelection(None, None, None), data_dir)
    return Calibrate(
        db,
        data_dir,
        max_age_days=cal.max_age_days,
        temperature_tolerance_c=cal.temperature_tolerance_c,
    )


def _photometry(config: Config, data_dir: Path) -> Stage:
    from obsctl.pipeline.photometry import SepPhotometry

    return SepPhotometry(
        read_noise_e=config.pipeline.read_noise_e,
        saturation_adu=config.pipeline.saturation_adu,
        gain_e_per_adu=config.pipeline.gain_e_per_adu,
    )


def _classify(config: Config, data_dir: Path) -> Stage:
    from obsctl.pipeline.classify import OnnxClassify

    return OnnxClassify(
        config.pipeline.classifier_model, masters_db=data_dir / DB_NAME, data_dir=data_dir
    )


def _astrometry(config: Config, data_dir: Path) -> Stage:
    from obsctl.pipeline.astrometry import Astrometry
    from obsctl.store.refcat import RefCatalog

    if config.pipeline.reference_catalog == "synthetic":
        sky = config.simulator.sky if config.simulator is not None else SimulatedSkyConfig()
        return Astrometry(SyntheticCone(sky))
    return Astrometry(RefCatalog(data_dir / REFCAT_NAME))


def _zeropoint(config: Config, data_dir: Path) -> Stage:
    from obsctl.pipeline.zeropoint import ZeroPoint

    return ZeroPoint(gain_e_per_adu=config.pipeline.gain_e_per_adu)


FACTORIES: dict[str, Callable[[Config, Path], Stage]] = {
    "calibrate": _calibrate,
    "photometry": _photometry,
    "classify": _classify,
    "astrometry": _astrometry,
    "zeropoint": _zeropoint,
}


def build_stages(config: Config, data_dir: str | Path) -> list[tuple[Stage, FailurePolicy]]:
    """Return the configured stages, in order, each with its failure policy."""
    folder = Path(data_dir)
    return [
        (FACTORIES[name](config, folder), config.pipeline.on_failure.get(name, "mark"))
        for name in config.pipeline.stages
    ]
