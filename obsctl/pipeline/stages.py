"""Build the configured stage list: an explicit map from a stage name to its factory.

`build_stages` runs once in every worker process, so it takes only picklable arguments (the
config, the data directory and the reference catalog's cone query) and opens its own
read-only handles there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from obsctl.config import Config
from obsctl.errors import ConfigError
from obsctl.pipeline.astrometry import ConeQuery
from obsctl.pipeline.stage import FailurePolicy, Stage
from obsctl.store.datadir import DataDir
from obsctl.store.refcat import RefCatalog

__all__ = ["build_stages", "check_stages"]

log = logging.getLogger(__name__)

#: Where the astrometry stage gets reference stars when not from the data directory.
Reference = ConeQuery | RefCatalog
_Factory = Callable[[Config, DataDir, "Reference | None"], Stage]


def _calibrate(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.calibration.masters import MasterSelection
    from obsctl.pipeline.calibrate import Calibrate

    cal = config.calibration
    if not data_dir.has_log():
        # Files from elsewhere, no exposure log: no masters, the frame is flagged.
        return Calibrate(lambda header: MasterSelection(None, None, None), data_dir.root)
    return Calibrate(
        data_dir.log_path,
        data_dir.root,
        max_age_days=cal.max_age_days,
        temperature_tolerance_c=cal.temperature_tolerance_c,
    )


def _photometry(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.pipeline.photometry import SepPhotometry

    return SepPhotometry(
        read_noise_e=config.pipeline.read_noise_e,
        saturation_adu=config.pipeline.saturation_adu,
        gain_e_per_adu=config.pipeline.gain_e_per_adu,
        aperture_fwhm=config.pipeline.aperture_fwhm,
        main_aperture=config.pipeline.main_aperture_index,
        psf_fit=config.pipeline.psf_fit,
    )


def _classify(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.pipeline.classify import OnnxClassify

    return OnnxClassify(
        config.pipeline.classifier_model, masters_db=data_dir.log_path, data_dir=data_dir.root
    )


def _astrometry(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.pipeline.astrometry import Astrometry

    # The filter-to-band map of [catalogs] applies to every reference source.
    bands = dict(config.catalogs.bands)
    if reference is not None:
        return Astrometry(reference, bands=bands)
    if config.pipeline.reference_catalog == "synthetic":
        raise ConfigError(
            "pipeline.reference_catalog = 'synthetic' is the simulators' sky: the stages get it "
            "from the embedded simulators (obsctl.embedded.reference_catalog)"
        )
    return Astrometry(RefCatalog(data_dir.catalog_path), bands=bands)


def _zeropoint(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.pipeline.zeropoint import ZeroPoint

    pipeline = config.pipeline
    return ZeroPoint(
        gain_e_per_adu=pipeline.gain_e_per_adu,
        fit_colour_term=None if pipeline.fit_colour_term == "auto" else pipeline.fit_colour_term,
        colour_terms=dict(pipeline.colour_terms),
        night_fits_db=data_dir.log_path if data_dir.has_log() else None,
    )


def _difference(config: Config, data_dir: DataDir, reference: Reference | None) -> Stage:
    from obsctl.pipeline.difference import Difference, MonitoredPosition

    targets = [
        MonitoredPosition(t.name, t.field or t.name, t.ra_deg, t.dec_deg)
        for t in config.monitoring.targets
    ]
    return Difference(
        data_dir.log_path,
        data_dir.root,
        threshold_sigma=config.difference.threshold_sigma,
        max_candidates=config.difference.max_candidates,
        targets=targets,
        saturation_adu=config.pipeline.saturation_adu,
        real_bogus_model=config.difference.real_bogus_model,
    )


FACTORIES: dict[str, _Factory] = {
    "calibrate": _calibrate,
    "photometry": _photometry,
    "classify": _classify,
    "astrometry": _astrometry,
    "zeropoint": _zeropoint,
    "difference": _difference,
}


def build_stages(
    config: Config, data_dir: DataDir | str | Path, reference: Reference | None = None
) -> list[tuple[Stage, FailurePolicy]]:
    """Return the configured stages, in order, each with its failure policy.

    Parameters
    ----------
    config : Config
        The configuration (``[pipeline]``, ``[calibration]``).
    data_dir : DataDir, str or pathlib.Path
        The data directory: the exposure log (masters) and the reference catalog.
    reference : callable, RefCatalog or None
        The reference stars (a cone query or a catalog); None reads the data directory's.

    Raises
    ------
    ConfigError
        When the config asks for the synthetic sky and no ``reference`` is given.
    """
    folder = data_dir if isinstance(data_dir, DataDir) else DataDir(data_dir)
    return [
        (FACTORIES[name](config, folder, reference), config.pipeline.on_failure.get(name, "mark"))
        for name in config.pipeline.stages
    ]


def check_stages(config: Config) -> None:
    """Check what the configured stages load before any frame is taken (the ONNX models).

    Raises
    ------
    ConfigError
        Naming ``pipeline.classifier_model`` or ``difference.real_bogus_model`` when the
        model is missing or does not take its classifier's input spec.
    """
    if "classify" in config.pipeline.stages:
        from obsctl.classify.model import SourceClassifier

        try:
            SourceClassifier(config.pipeline.classifier_model)
        except ConfigError as exc:
            raise ConfigError(f"pipeline.classifier_model: {exc}", path=exc.path) from exc
    if "difference" in config.pipeline.stages:
        from obsctl.classify.realbogus import RealBogusClassifier

        try:
            RealBogusClassifier(config.difference.real_bogus_model)
        except ConfigError as exc:
            raise ConfigError(f"difference.real_bogus_model: {exc}", path=exc.path) from exc
