"""The `Calibrate` stage: bias, dark and flat correction with the best matching masters."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.calibration.masters import (
    KINDS,
    MasterRecord,
    MasterSelection,
    MasterSelector,
    accept_geometry,
    geometry_of,
    load_master,
    select_masters,
)
from obsctl.errors import StageError
from obsctl.frame import Frame
from obsctl.processing.calibrate import calibrate_image, fits_section, subtract_overscan
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import set_text_card

__all__ = ["Calibrate"]

log = logging.getLogger(__name__)


class Calibrate:
    """Pipeline stage: bias, dark and flat correction with the best matching masters.

    The output is native, C-contiguous float32 (ADU, ``BUNIT``). The header records the
    masters used (``MBIAS``, ``MDARK`` with its scale ``MDARKSCL``, ``MFLAT``) and ``CALSTAT``
    (letters of the corrections applied: B, D, F). A missing master is not an error: the frame
    is calibrated with what exists and flagged ``no master bias`` (``dark``, ``flat``).

    Parameters
    ----------
    masters : ExposureLog, str, pathlib.Path or callable
        Where masters are looked up: the exposure log, the path of its database (opened on
        first use, so the stage can be built in a worker process), or a function choosing the
        masters from a frame header.
    data_dir : str or pathlib.Path
        The data directory master paths are relative to.
    max_age_days : float, optional
        Largest distance (days) between a master's night and the frame's.
    temperature_tolerance_c : float, optional
        Largest sensor temperature difference (degC).
    cache_size : int, optional
        Masters kept in memory (each is one float32 frame).
    """

    name = "calibrate"

    def __init__(
        self,
        masters: ExposureLog | str | Path | MasterSelector,
        data_dir: str | Path,
        *,
        max_age_days: float = 30.0,
        temperature_tolerance_c: float = 2.0,
        cache_size: int = 4,
    ) -> None:
        self._masters = masters
        self._log_db: ExposureLog | None = None
        self.data_dir = Path(data_dir)
        self.max_age_days = max_age_days
        self.temperature_tolerance_c = temperature_tolerance_c
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, int], NDArray[np.float32]] = OrderedDict()

    def close(self) -> None:
        """Close the exposure log if the stage opened it, and drop the cached masters."""
        if self._log_db is not None and not isinstance(self._masters, ExposureLog):
            self._log_db.close()
        self._log_db = None
        self._cache.clear()

    def _select(self, header: fits.Header, shape: tuple[int, int]) -> MasterSelection:
        if callable(self._masters):
            return self._masters(header)
        if self._log_db is None:
            self._log_db = (
                self._masters
                if isinstance(self._masters, ExposureLog)
                else ExposureLog(self._masters)
            )
        return select_masters(
            self._log_db,
            header,
            max_age_days=self.max_age_days,
            temperature_tolerance_c=self.temperature_tolerance_c,
            accept=accept_geometry(self.data_dir, geometry_of(header, shape)),
        )

    def _load(self, record: MasterRecord) -> NDArray[np.float32]:
        path = self.data_dir / record.file_path
        # The modification time is part of the key: a rebuilt master has the same name.
        key = (str(path), path.stat().st_mtime_ns)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = load_master(path)
        self._cache[key] = data
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def process(self, frame: Frame) -> Frame:
        """Return the calibrated frame (see the class docstring).

        Raises
        ------
        StageError
            If the frame is not a 2-D image or the master table cannot be read.
        """
        if frame.data.ndim != 2:
            raise StageError(
                f"expected a 2-D image, got shape {frame.data.shape}",
                stage=self.name,
                frame_id=frame.exposure_id,
            )
        header = frame.header
        shape = (int(frame.data.shape[0]), int(frame.data.shape[1]))
        try:
            selection = self._select(header, shape)
        except Exception as exc:
            raise StageError(
                f"cannot look up masters: {exc}", stage=self.name, frame_id=frame.exposure_id
            ) from exc
        loaded: dict[str, tuple[MasterRecord, NDArray[np.float32]] | None] = {}
        problems: list[str] = []
        for kind in KINDS:
            record = getattr(selection, kind)
            loaded[kind] = None
            if record is None:
                continue
            try:
                data = self._load(record)
            except (OSError, ValueError) as exc:
                log.warning(
                    "master %s unreadable (%s); frame left without it", record.file_path, exc
                )
                problems.append(f"master {kind} unreadable")
                continue
            if data.shape != shape:
                problems.append(f"master {kind} shape mismatch")
                continue
            loaded[kind] = (record, data)
        bias, dark, flat = loaded["bias"], loaded["dark"], loaded["flat"]
        exposure_s = float(header.get("EXPTIME", header.get("EXPOSURE", 0.0)))
        raw, overscan_level = frame.data, None
        if bias is None and "BIASSEC" in header:
            # A frame from a CCD with an overscan strip and no master bias (an observatory's
            # raw frame reduced here): the strip gives the bias level, row by row.
            try:
                raw, overscan_level = subtract_overscan(
                    frame.data, fits_section(header["BIASSEC"], shape)
                )
            except ValueError as exc:
                problems.append(f"BIASSEC ignored: {exc}")
        result = calibrate_image(
            raw,
            bias=None if bias is None else bias[1],
            dark=None if dark is None else dark[1],
            dark_exposure_s=None if dark is None else dark[0].exposure_s,
            exposure_s=exposure_s,
            flat=None if flat is None else flat[1],
        )
        out = header.copy()
        out["BUNIT"] = ("ADU", "pixel unit; corrections applied: CALSTAT")
        applied = ""
        for key, letter, entry in (
            ("MBIAS", "B", bias),
            ("MDARK", "D", dark),
            ("MFLAT", "F", flat),
        ):
            if entry is not None:
                set_text_card(out, key, Path(entry[0].file_path).name, "master used")
                applied += letter
        if result.dark_scale is not None:
            out["MDARKSCL"] = (result.dark_scale, "master dark scaled by this factor")
        if overscan_level is not None:
            out["OVERSCAN"] = (round(overscan_level, 2), "[ADU] bias level from BIASSEC")
            applied = "O" + applied
        out["CALSTAT"] = (applied or "none", "applied: O overscan, B bias, D dark, F flat")
        data, mask = result.data, frame.mask
        if result.bad_flat is not None and result.bad_flat.any():
            mask = result.bad_flat if mask is None else (mask | result.bad_flat)
        trim = header.get("TRIMSEC", header.get("DATASEC"))
        if trim is not None:
            try:
                data, mask = _trim(data, mask, out, trim)
            except ValueError as exc:
                problems.append(f"TRIMSEC/DATASEC ignored: {exc}")
        calibrated = frame.with_stage(self.name, data=data, header=out, mask=mask)
        for problem in problems:
            calibrated = calibrated.flagged(problem)
        missing = [kind for kind in result.missing if not (kind == "bias" and overscan_level)]
        for absent in missing:
            calibrated = calibrated.flagged(f"no master {absent}")
        return calibrated


def _trim(
    data: NDArray[np.float32], mask: NDArray[np.bool_] | None, header: fits.Header, text: str
) -> tuple[NDArray[np.float32], NDArray[np.bool_] | None]:
    """Cut a frame to its data section (``TRIMSEC``/``DATASEC``), keeping its WCS right.

    The header (changed in place) gets the section in ``TRIMMED``, IRAF's ``LTV1``/``LTV2``
    offsets and a shifted ``CRPIX``; the section cards go, so the result is not cut again.

    Raises
    ------
    ValueError
        If the section is not one or does not fit the image.
    """
    rows, cols = fits_section(text, (int(data.shape[0]), int(data.shape[1])))
    for key in ("TRIMSEC", "DATASEC", "BIASSEC"):
        header.remove(key, ignore_missing=True, remove_all=True)
    header["TRIMMED"] = (str(text), "section of the raw frame kept")
    header["LTV1"] = (-float(cols.start), "[px] raw x = x - LTV1")
    header["LTV2"] = (-float(rows.start), "[px] raw y = y - LTV2")
    for key, offset in (("CRPIX1", cols.start), ("CRPIX2", rows.start)):
        if key in header:
            header[key] = float(header[key]) - offset
    trimmed = np.ascontiguousarray(data[rows, cols])
    return trimmed, None if mask is None else np.ascontiguousarray(mask[rows, cols])
