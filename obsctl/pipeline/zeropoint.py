"""The `ZeroPoint` stage: the frame's zero point from matched reference stars, and its depth.

The numeric work is in `obsctl.processing.zeropoint` and `obsctl.processing.metrics`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from obsctl.classify.labels import FLAG_NOT_CELESTIAL
from obsctl.errors import StageError, StorageError
from obsctl.frame import Frame
from obsctl.pipeline.photometry import resolve_gain_e_per_adu
from obsctl.processing.metrics import limiting_magnitude
from obsctl.processing.photometry import (
    FLAG_BLENDED,
    FLAG_CROWDED,
    FLAG_EDGE,
    FLAG_SATURATED,
    FLAG_SHARP,
    FLAG_WINPOS_FAILED,
)
from obsctl.processing.tables import with_columns
from obsctl.processing.zeropoint import (
    ZeroPointResult,
    calibrated_magnitudes,
    fit_zero_point,
    instrumental_magnitudes,
)
from obsctl.store.exposure_log import ExposureLog

__all__ = ["CALIBRATION_REJECT_FLAGS", "ZeroPoint"]

log = logging.getLogger(__name__)

#: Flags that keep a star out of the zero-point fit: its aperture flux is not trustworthy.
#: (``FLAG_SHAPE_FAILED`` is allowed: faint stars often have too few core pixels to fit.)
CALIBRATION_REJECT_FLAGS = (
    FLAG_SATURATED | FLAG_EDGE | FLAG_BLENDED | FLAG_CROWDED | FLAG_SHARP | FLAG_WINPOS_FAILED
    | 0x02 | 0x04 | 0x10 | 0x20 | 0x40 | 0x80  # SEP: OBJ_TRUNC, OBJ_DOVERFLOW, APER_*
    | FLAG_NOT_CELESTIAL  # classify: cosmic ray, hot pixel or artifact
)  # fmt: skip


def _exposure_s(header: fits.Header, stage: str, frame: Frame) -> float:
    try:
        exposure = float(header.get("EXPTIME", header.get("EXPOSURE")))
    except (TypeError, ValueError) as exc:
        raise StageError(
            "no EXPTIME in the header", stage=stage, frame_id=frame.exposure_id
        ) from exc
    if not exposure > 0.0:
        raise StageError(
            f"EXPTIME {exposure} s: a zero point needs a light exposure",
            stage=stage,
            frame_id=frame.exposure_id,
        )
    return exposure


@dataclass(frozen=True, kw_only=True)
class ZeroPoint:
    """Pipeline stage: the frame's zero point from matched reference stars; calibrated mags.

    Reads the catalog columns ``ref_mag`` (NaN where unmatched) and, when present,
    ``ref_mag_err`` and ``ref_colour``, which the astrometry stage fills. Adds the columns
    ``mag``, ``mag_err`` (calibrated, electrons-per-second scale, see
    `obsctl.processing.zeropoint`), ``zp_used`` (the star entered the fit), ``inst_mag`` and
    ``inst_mag_err`` (instrumental), and the metrics ``zero_point`` (at the median colour of
    the stars used), ``zero_point_err``, ``zero_point_rms``, ``zero_point_stars``,
    ``colour_term``, ``colour_term_err`` (NaN when held), ``colour_term_fitted`` (1 when
    fitted on the frame, 0 when held), ``limiting_mag`` (50 % completeness, when enabled)
    and, with a nominal zero point, ``transparency`` (``10**(-0.4 * (nominal -
    zero_point))``, 1 on a clear night) — the cloud indicator. The header gets ``PHOTZP``
    and ``PHOTZPER``. The frame's
    ``gain_e_per_adu`` converts fluxes to electrons; the limiting magnitude uses its
    ``fwhm_px``, ``background_rms_adu`` and ``aperture_radius_px`` (NaN without a FWHM), all
    set by `SepPhotometry`.

    Parameters
    ----------
    fit_colour_term : bool or None, optional
        Fit a colour term against ``ref_colour``: None (default) when the frame has at least
        `min_colour_stars` usable stars with colours spanning `min_colour_span` (5th to 95th
        percentile) and the fitted term's error is at most `max_colour_term_err`; True
        requires it (a `StageError` otherwise); False never fits it. A term not fitted is
        held at the night's fitted value for the frame's filter (from `night_fits_db`,
        else the latest night's), else at `colour_terms`, else 0, and the frame is flagged.
    min_colour_stars : int, optional
        Fewest usable stars with a reference colour to fit the colour term.
    min_colour_span : float, optional
        Smallest colour range (mag) to fit the colour term.
    max_colour_term_err : float, optional
        Largest error (mag per mag) of a frame's fitted colour term still used.
    colour_terms : mapping of str to float, optional
        Colour term per filter name (mag per mag), held when neither the frame nor a night
        fit gives one.
    night_fits_db : str or pathlib.Path or None, optional
        The exposure log with the nights' fits (`obsctl.pipeline.nightfit`), read when a
        colour term is to be held.
    clip_sigma : float, optional
        Outlier rejection threshold.
    min_stars : int, optional
        Fewest usable reference stars.
    min_snr : float, optional
        Faintest stars used (main-aperture S/N).
    gain_e_per_adu : float, optional
        As for `SepPhotometry`; only used for a frame that photometry did not give a
        ``gain_e_per_adu`` (see `resolve_gain_e_per_adu`).
    nominal_zero_point : float, optional
        The site's clear-sky zero point (mag), for ``transparency``.
    measure_limiting_mag : bool, optional
        Measure the limiting magnitude by injection (about 0.06-0.1 s per frame).
    detect_sigma, minarea, back_size
        The detection settings `SepPhotometry` used, for the injection test.
    seed : int, optional
        Seed of the injection positions (the result is reproducible per frame).
    """

    name: ClassVar[str] = "zeropoint"

    fit_colour_term: bool | None = None
    min_colour_stars: int = 10
    min_colour_span: float = 0.3
    max_colour_term_err: float = 0.03
    colour_terms: Mapping[str, float] = field(default_factory=dict)
    night_fits_db: str | Path | None = None
    clip_sigma: float = 3.0
    min_stars: int = 5
    min_snr: float = 10.0
    gain_e_per_adu: float | None = None
    nominal_zero_point: float | None = None
    measure_limiting_mag: bool = True
    detect_sigma: float = 3.0
    minarea: int = 5
    back_size: int = 64
    seed: int = 0

    def _fail(self, message: str, frame: Frame) -> StageError:
        return StageError(message, stage=self.name, frame_id=frame.exposure_id)

    def process(self, frame: Frame) -> Frame:
        """Return the frame with calibrated magnitudes and its zero point.

        Raises
        ------
        StageError
            Without a catalog, reference magnitudes, exposure time, gain, or with too few
            usable reference stars.
        """
        sources = frame.sources
        if sources is None:
            raise self._fail("no source catalog: run the photometry stage first", frame)
        names = sources.dtype.names or ()
        if "ref_mag" not in names:
            raise self._fail("no ref_mag column: run the astrometry stage first", frame)
        exposure_s = _exposure_s(frame.header, self.name, frame)
        gain_e_per_adu = frame.gain_e_per_adu
        if gain_e_per_adu is None:
            gain_e_per_adu = resolve_gain_e_per_adu(frame, self.gain_e_per_adu, stage=self.name)

        inst, inst_err = instrumental_magnitudes(
            sources["flux"], sources["flux_err"], exposure_s, gain_e_per_adu=gain_e_per_adu
        )
        ref = np.asarray(sources["ref_mag"], dtype=np.float64)
        ref_err = np.asarray(sources["ref_mag_err"], float) if "ref_mag_err" in names else None
        colour = np.asarray(sources["ref_colour"], float) if "ref_colour" in names else None
        if self.fit_colour_term and colour is None:
            raise self._fail("fit_colour_term is set but there is no ref_colour column", frame)
        usable = np.isfinite(ref) & np.isfinite(inst) & (sources["snr"] >= self.min_snr)
        usable &= (sources["flags"] & CALIBRATION_REJECT_FLAGS) == 0
        if np.count_nonzero(usable) < self.min_stars:
            raise self._fail(
                f"{np.count_nonzero(usable)} usable reference stars, need {self.min_stars}", frame
            )
        fit, held_why = self._fit(frame, inst, inst_err, ref, ref_err, colour, usable)
        used = np.zeros(len(sources), dtype=bool)
        used[np.flatnonzero(usable)[fit.mask]] = True
        with_colour = used if colour is None else used & np.isfinite(colour)
        default_colour = (
            float(np.median(colour[with_colour]))
            if fit.colour_term != 0.0 and colour is not None and with_colour.any()
            else 0.0
        )
        mag, mag_err = calibrated_magnitudes(
            sources["flux"],
            sources["flux_err"],
            exposure_s,
            fit.zero_point,
            fit.error,
            gain_e_per_adu=gain_e_per_adu,
            colour=colour,
            colour_term=fit.colour_term,
            default_colour=default_colour,
        )
        # The instrumental magnitudes are stored with the reference ones: the night's
        # extinction and colour fit (`obsctl.pipeline.nightfit`) works from them.
        catalog = with_columns(
            sources,
            {
                "mag": mag,
                "mag_err": mag_err,
                "zp_used": used,
                "inst_mag": inst,
                "inst_mag_err": inst_err,
            },
        )

        # The zero point of the frame's typical star (its colour term included).
        zero_point = fit.zero_point + fit.colour_term * default_colour
        metrics: dict[str, float] = {
            "zero_point": zero_point,
            "zero_point_err": fit.error,
            "zero_point_rms": fit.rms,
            "zero_point_stars": float(fit.n_used),
            "colour_term": fit.colour_term,
            "colour_term_err": fit.colour_term_err if held_why is None else math.nan,
            "colour_term_fitted": 0.0 if held_why is not None else 1.0,
        }
        if self.nominal_zero_point is not None:
            metrics["transparency"] = 10.0 ** (-0.4 * (self.nominal_zero_point - zero_point))
        warnings: tuple[str, ...] = () if not held_why else (held_why,)
        if self.measure_limiting_mag:
            try:
                metrics["limiting_mag"] = self._limiting_mag(
                    frame, catalog, zero_point, exposure_s, gain_e_per_adu
                )
            except (ValueError, RuntimeError) as exc:  # the zero point stands without it
                metrics["limiting_mag"] = math.nan
                warnings = (*warnings, f"limiting magnitude failed: {exc}")

        header = frame.header.copy()
        header["PHOTZP"] = (round(zero_point, 4), "[mag] zero point, e-/s in main aperture")
        header["PHOTZPER"] = (round(fit.error, 4), "[mag] zero point error")
        return frame.with_stage(
            self.name,
            sources=catalog,
            header=header,
            metrics={**frame.metrics, **metrics},
            flags=(*frame.flags, *warnings),
        )

    def _fit(
        self,
        frame: Frame,
        inst: NDArray[np.float64],
        inst_err: NDArray[np.float64],
        ref: NDArray[np.float64],
        ref_err: NDArray[np.float64] | None,
        colour: NDArray[np.float64] | None,
        usable: NDArray[np.bool_],
    ) -> tuple[ZeroPointResult, str | None]:
        """Fit the zero point, with the colour term fitted or held.

        Returns the fit and None when the colour term was fitted, else why it was held
        (an empty text when there are no reference colours at all, which is no warning).
        """
        held_why: str | None = ""
        held = 0.0
        fit_colour = False
        if colour is not None and self.fit_colour_term is not False:
            coloured = usable & np.isfinite(colour)
            n = int(np.count_nonzero(coloured))
            span = float(np.subtract(*np.percentile(colour[coloured], [95, 5]))) if n else 0.0
            fit_colour = n >= self.min_colour_stars and span >= self.min_colour_span
            if self.fit_colour_term and not fit_colour:
                raise self._fail(
                    f"fit_colour_term is set but {n} stars have colours spanning {span:.2f} mag "
                    f"(need {self.min_colour_stars} over {self.min_colour_span} mag)",
                    frame,
                )
            if not fit_colour:
                held, source = self._held_colour_term(frame)
                held_why = (
                    f"colour term held at {held:+.3f} ({source}): {n} reference stars with "
                    f"colours spanning {span:.2f} mag"
                )
        elif colour is not None:
            held, source = self._held_colour_term(frame)
            held_why = "" if held == 0.0 else f"colour term held at {held:+.3f} ({source})"
        result = self._fit_once(
            frame, inst, inst_err, ref, ref_err, colour, usable, fit_colour, held
        )
        if fit_colour and not result.colour_term_err <= self.max_colour_term_err:
            # Fitted, but too poorly for the frame's calibration: hold a known value.
            held, source = self._held_colour_term(frame)
            held_why = (
                f"colour term held at {held:+.3f} ({source}): the frame's fit "
                f"{result.colour_term:+.3f} +- {result.colour_term_err:.3f} is too uncertain"
            )
            fit_colour = False
            result = self._fit_once(
                frame, inst, inst_err, ref, ref_err, colour, usable, False, held
            )
        return result, (None if fit_colour else held_why)

    def _fit_once(
        self,
        frame: Frame,
        inst: NDArray[np.float64],
        inst_err: NDArray[np.float64],
        ref: NDArray[np.float64],
        ref_err: NDArray[np.float64] | None,
        colour: NDArray[np.float64] | None,
        usable: NDArray[np.bool_],
        fit_colour: bool,
        held: float,
    ) -> ZeroPointResult:
        try:
            return fit_zero_point(
                inst[usable],
                inst_err[usable],
                ref[usable],
                reference_err=None if ref_err is None else ref_err[usable],
                colour=None if colour is None else colour[usable],
                fit_colour_term=fit_colour,
                colour_term=held,
                clip_sigma=self.clip_sigma,
                min_stars=self.min_stars,
            )
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise self._fail(f"zero-point fit failed: {exc}", frame) from exc

    def _held_colour_term(self, frame: Frame) -> tuple[float, str]:
        """Return the colour term to hold when the frame cannot fit one, and its source.

        The night's fit of the frame's filter (or the latest night's), else the configured
        value of the filter, else 0.
        """
        filter_name = str(frame.header.get("FILTER", "")).strip()
        night = str(frame.header.get("DAY-OBS", "")).strip()
        if self.night_fits_db is not None and filter_name:
            try:
                log_db = ExposureLog(self.night_fits_db)
                try:
                    found = log_db.night_colour_term(night, filter_name)
                finally:
                    log_db.close()
            except StorageError as exc:  # the frame is calibrated without it
                log.warning("no night colour term for exposure %s: %s", frame.exposure_id, exc)
                found = None
            if found is not None:
                return found[0], f"fit of the night {found[1]}"
        if filter_name in self.colour_terms:
            return float(self.colour_terms[filter_name]), "configured"
        return 0.0, "none known"

    def _limiting_mag(
        self,
        frame: Frame,
        catalog: NDArray[Any],
        zero_point: float,
        exposure_s: float,
        gain_e_per_adu: float,
    ) -> float:
        fwhm = frame.fwhm_px
        if fwhm is None or not (math.isfinite(fwhm) and fwhm > 0):
            return math.nan
        return limiting_magnitude(
            frame.data,
            catalog,
            zero_point=zero_point,
            exposure_s=exposure_s,
            fwhm_px=fwhm,
            gain_e_per_adu=gain_e_per_adu,
            rms_adu=frame.background_rms_adu,
            aperture_radius_px=frame.aperture_radius_px,
            mask=frame.mask,
            seed=self.seed,
            detect_sigma=self.detect_sigma,
            minarea=self.minarea,
            back_size=self.back_size,
        )
