"""Pipeline stage: classify every detection with the ONNX source classifier.

`OnnxClassify` runs after photometry (it needs the catalog) and before astrometry and the
zero point, so that cosmic rays, hot pixels and artifacts are kept out of the WCS fit, the
zero point and the image-quality metrics.

Cosmic ray or hot pixel: in one frame a one-pixel hit and a hot pixel look the same. The
master dark knows the hot pixels, so its hot-pixel map is a third input channel of the model
(rather than a rule in this stage): the model learns where a map pixel matters (a spike on
it) and where it does not (a star or a cosmic ray that happens to cover one), which a rule on
the peak pixel gets wrong for stars peaking on a hot pixel. Without a master dark the channel
is zero and hot pixels come out as cosmic rays; both are excluded alike.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.classify.cutouts import detection_mask, hot_pixel_map, model_inputs, trained_scale
from obsctl.classify.labels import CLASSES, FLAG_NOT_CELESTIAL, NOT_CELESTIAL, PROBABILITY_COLUMNS
from obsctl.classify.model import SourceClassifier
from obsctl.errors import StageError
from obsctl.frame import Frame
from obsctl.processing.metrics import frame_metrics
from obsctl.processing.photometry import BackgroundInfo
from obsctl.store.headers import pixel_scale_from_header

__all__ = ["CLASS_COUNT_METRICS", "OnnxClassify"]

log = logging.getLogger(__name__)

#: Frame metrics holding the number of detections of each class.
CLASS_COUNT_METRICS: tuple[str, ...] = tuple(f"n_{name}" for name in CLASSES)
_MASKED = frozenset({"cosmic_ray", "hot_pixel"})
# Image-quality metrics recomputed from the sources classified as stars.
_STAR_METRICS = (
    "fwhm_px",
    "fwhm_arcsec",
    "hfr_px",
    "hfr_arcsec",
    "ellipticity",
    "psf_star_count",
    "star_count",
)


class OnnxClassify:
    """Pipeline stage: class and class probabilities of every detection; cosmic-ray mask.

    Adds the catalog columns ``source_class`` (a name of `obsctl.classify.labels.CLASSES`)
    and ``p_star``, ``p_galaxy``, ``p_cosmic_ray``, ``p_hot_pixel``, ``p_artifact``
    (calibrated probabilities), and sets `FLAG_NOT_CELESTIAL` on cosmic rays, hot pixels and
    artifacts. Their pixels (cosmic rays and hot pixels) go into ``frame.cosmic_mask`` and
    ``frame.mask``. The metrics get ``n_star`` ... ``n_artifact`` and ``artifact_fraction``
    (artifacts over all detections), and the image-quality metrics (FWHM, HFR, ellipticity,
    star counts) are recomputed from the stars alone. It needs the frame's
    ``background_rms_adu`` and ``fwhm_px``, which `SepPhotometry` sets.

    Parameters
    ----------
    model_path : str or pathlib.Path, optional
        ONNX model with the input spec of `obsctl.classify.cutouts`; the shipped one by
        default.
    masters_db : str or pathlib.Path, optional
        The exposure log database whose ``masters`` table locates the master dark named in
        the frame header (``MDARK``), for the hot-pixel map.
    data_dir : str or pathlib.Path, optional
        The folder master paths are relative to.
    threads : int, optional
        onnxruntime threads.

    Raises
    ------
    obsctl.classify.model.ModelInputError
        At construction, if the model does not match the input spec.
    """

    name = "classify"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        masters_db: str | Path | None = None,
        data_dir: str | Path | None = None,
        threads: int = 1,
    ) -> None:
        self.classifier = SourceClassifier(model_path, threads=threads)
        self.masters_db = Path(masters_db) if masters_db is not None else None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._hot_maps: OrderedDict[tuple[str, int], NDArray[np.bool_]] = OrderedDict()
        self._dark_paths: dict[str, Path] = {}

    def _fail(self, message: str, frame: Frame) -> StageError:
        return StageError(message, stage=self.name, frame_id=frame.exposure_id)

    def _master_dark_path(self, name: str) -> Path | None:
        if name in self._dark_paths:
            return self._dark_paths[name]
        if self.masters_db is None or self.data_dir is None or not self.masters_db.exists():
            return None
        from obsctl.store.exposure_log import ExposureLog

        db = ExposureLog(self.masters_db)
        try:
            files = db.master_files("dark")
        finally:
            db.close()
        for file_path in files:
            if Path(file_path).name == name:
                # A rebuilt master keeps its name and path; the map cache checks its mtime.
                self._dark_paths[name] = self.data_dir / file_path
                return self._dark_paths[name]
        return None

    def hot_map(self, header: fits.Header, shape: tuple[int, int]) -> NDArray[np.bool_] | None:
        """Return the hot-pixel map of the master dark the frame was calibrated with, or None."""
        name = header.get("MDARK")
        if not name:
            return None
        path = self._master_dark_path(str(name))
        if path is None or not path.is_file():
            return None
        key = (str(path), path.stat().st_mtime_ns)
        if key not in self._hot_maps:
            with fits.open(path, memmap=False) as hdul:
                dark = next((h.data for h in hdul if getattr(h.data, "ndim", 0) == 2), None)
            if dark is None:
                return None
            self._hot_maps[key] = hot_pixel_map(dark)
            while len(self._hot_maps) > 2:
                self._hot_maps.popitem(last=False)
        hot = self._hot_maps[key]
        return hot if hot.shape == shape else None

    def process(self, frame: Frame) -> Frame:
        """Return the frame with classified sources, the cosmic-ray mask and class counts.

        Raises
        ------
        StageError
            Without a catalog or the frame's background rms and FWHM (run photometry first).
        """
        sources = frame.sources
        if sources is None:
            raise self._fail("no source catalog: run the photometry stage first", frame)
        rms = _or_nan(frame.background_rms_adu)
        fwhm = _or_nan(frame.fwhm_px)
        if not (math.isfinite(rms) and rms > 0 and math.isfinite(fwhm) and fwhm > 0):
            raise self._fail(
                "no background_rms_adu / fwhm_px on the frame: run the photometry stage first",
                frame,
            )
        shape = (int(frame.data.shape[0]), int(frame.data.shape[1]))
        try:
            hot = self.hot_map(frame.header, shape)
        except (OSError, ValueError) as exc:  # an unreadable dark only costs the map
            log.warning("frame %s: hot-pixel map unavailable: %s", frame.exposure_id, exc)
            hot = None
        try:
            image, scaled, rms_in, fwhm_in, factor = trained_scale(
                frame.data, sources, rms_adu=rms, fwhm_px=fwhm
            )
            cutouts, features, cy, cx = model_inputs(
                image,
                scaled,
                rms_adu=rms_in,
                fwhm_px=fwhm_in,
                hot_map=hot if factor == 1 else None,  # a binned map would blur the spikes
            )
        except ValueError as exc:
            raise self._fail(str(exc), frame) from exc
        if factor > 1:  # the cosmic-ray mask is drawn on the frame itself
            cy = np.clip(np.rint(sources["y"]), 0, shape[0] - 1).astype(np.intp)
            cx = np.clip(np.rint(sources["x"]), 0, shape[1] - 1).astype(np.intp)
        probabilities = self.classifier.predict(cutouts, features)
        index = probabilities.argmax(axis=1) if len(sources) else np.zeros(0, dtype=np.intp)
        names = np.array(CLASSES)[index] if len(sources) else np.zeros(0, dtype="U10")

        catalog = _with_classes(sources, names, probabilities)
        not_celestial = np.isin(names, sorted(NOT_CELESTIAL))
        catalog["flags"] = np.where(
            not_celestial, catalog["flags"] | FLAG_NOT_CELESTIAL, catalog["flags"]
        )
        masked = np.isin(names, sorted(_MASKED))
        cosmic = detection_mask(
            frame.data, cy[masked], cx[masked], sources["background"][masked], rms_adu=rms
        )
        mask = cosmic if frame.mask is None else (frame.mask | cosmic)

        counts = {f"n_{name}": float(np.count_nonzero(names == name)) for name in CLASSES}
        metrics: dict[str, float] = {**frame.metrics, **counts}
        metrics["artifact_fraction"] = (
            counts["n_artifact"] / len(sources) if len(sources) else math.nan
        )
        metrics.update(self._star_metrics(frame, catalog[names == "star"]))
        flags = (
            frame.flags
            if hot is not None or "MDARK" not in frame.header
            else (
                *frame.flags,
                "classify: master dark not found, no hot-pixel map",
            )
        )
        log.debug(
            "frame %s: %s",
            frame.exposure_id,
            ", ".join(f"{k} {int(v)}" for k, v in counts.items()),
        )
        return frame.with_stage(
            self.name,
            sources=catalog,
            mask=mask,
            cosmic_mask=cosmic,
            metrics=metrics,
            flags=flags,
        )

    def _star_metrics(self, frame: Frame, stars: NDArray[Any]) -> dict[str, float]:
        info = BackgroundInfo(
            level_adu=_or_nan(frame.background_adu),
            rms_adu=_or_nan(frame.background_rms_adu),
            box_px=0,
            fwhm_px=_or_nan(frame.fwhm_px),
            aperture_radii_px=(_or_nan(frame.aperture_radius_px),),
            main_aperture=0,
        )
        scale = pixel_scale_from_header(frame.header)
        values = frame_metrics(stars, info, pixel_scale_arcsec=scale)
        return {k: values[k] for k in _STAR_METRICS if k in values}


def _or_nan(value: float | None) -> float:
    """Return a value photometry left on the frame, NaN when it did not run."""
    return math.nan if value is None else value


def _with_classes(
    sources: NDArray[Any], names: NDArray[Any], probabilities: NDArray[np.float32]
) -> NDArray[Any]:
    """Return a copy of the catalog with the class columns added (replaced if present)."""
    new = {"source_class", *PROBABILITY_COLUMNS}
    kept = [(n, sources.dtype[n]) for n in sources.dtype.names or () if n not in new]
    dtype = np.dtype(
        [*kept, ("source_class", "U10"), *((c, np.float64) for c in PROBABILITY_COLUMNS)]
    )
    out = np.empty(len(sources), dtype=dtype)
    for n, _ in kept:
        out[n] = sources[n]
    out["source_class"] = names
    for i, column in enumerate(PROBABILITY_COLUMNS):
        out[column] = probabilities[:, i]
    return out
