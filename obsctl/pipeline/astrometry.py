"""The `Astrometry` stage: refine the header's approximate WCS against reference stars.

It takes the sources the photometry stage detected, the approximate WCS the raw header carries
(mount pointing, nominal scale and angle) and the reference stars of the local catalog around
the field, and runs `obsctl.processing.astrometry.match_and_fit`. The fitted WCS replaces the
approximate one in a copy of the header; every source gets ``ra_deg``/``dec_deg``, and matched
ones their reference magnitude in the filter's band for the zero point.

A frame that cannot be solved (clouds, wrong field, too few stars) is not an error: it is
flagged ``"astrometry failed: <reason>"``, keeps its approximate WCS, and its sources get
positions from that.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from obsctl.classify.labels import FLAG_NOT_CELESTIAL
from obsctl.frame import Frame
from obsctl.processing.astrometry import AstrometryResult, NoSolution, match_and_fit
from obsctl.processing.tables import with_columns
from obsctl.store.refcat import (
    MAG_COLUMNS,
    RefCatalog,
    band_colour,
    band_magnitudes,
    reference_band,
)

__all__ = ["Astrometry", "ConeQuery", "strip_wcs"]

log = logging.getLogger(__name__)

#: A function returning reference stars around ``(ra_deg, dec_deg)`` within ``radius_deg``:
#: a structured array with ``ra_deg``, ``dec_deg`` and any of the `obsctl.store.refcat.MAG_COLUMNS`
#: (with ``_err``), in any order.
ConeQuery = Callable[[float, float, float], NDArray[Any]]

# Reference stars asked for per detection: the query circle is larger than the frame (it must
# hold the frame wherever the pointing error puts it), and the catalog's brightness order only
# roughly follows the detections'.
_REFS_PER_SOURCE = 5
_MIN_REFS = 500
_RADIUS_MARGIN = 1.02

_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|"
    r"PV\d_\d+|LONPOLE|LATPOLE|MJDREF|(A|B|AP|BP)_ORDER|(A|B)_DMAX|(A|B|AP|BP)_\d+_\d+|"
    r"WCSRMS|WCSRMSPX|WCSNMAT)$"
)
# The keys a celestial WCS reads; the rest of a raw header (DATE-OBS, MJD-OBS...) only makes
# astropy "fix" dates and warn.
_WCS_INPUT = re.compile(
    r"^(WCSAXES|CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CROTA\d|CD\d_\d|PC\d_\d|PV\d_\d+|"
    r"LONPOLE|LATPOLE|RADESYS|EQUINOX|(A|B|AP|BP)_ORDER|(A|B|AP|BP)_\d+_\d+)$"
)

_NEW_COLUMNS = (
    ("ra_deg", np.float64),
    ("dec_deg", np.float64),
    ("ref_id", np.int64),
    ("ref_mag", np.float64),
    ("ref_mag_err", np.float64),
    ("ref_colour", np.float64),
)


def strip_wcs(header: fits.Header) -> fits.Header:
    """Return a copy of a header without WCS keywords (including SIP and our fit summary)."""
    out = header.copy()
    for key in [k for k in out if _WCS_KEY.match(k)]:
        out.remove(key, remove_all=True)
    return out


def _approximate_wcs(header: fits.Header) -> WCS | None:
    """Return the header's celestial WCS, or None when it has none."""
    if "CTYPE1" not in header or "CTYPE2" not in header:
        return None
    subset = fits.Header([card for card in header.cards if _WCS_INPUT.match(card.keyword)])
    try:
        wcs = WCS(subset, naxis=2)
    except Exception:  # astropy and wcslib raise many types for bad keywords
        log.debug("header WCS unreadable", exc_info=True)
        return None
    if not wcs.has_celestial:
        return None
    return wcs.celestial


@dataclass(frozen=True)
class Astrometry:
    """Fit the WCS of a frame against the reference catalog.

    Parameters
    ----------
    catalog : RefCatalog or callable
        Where reference stars come from: a `obsctl.store.refcat.RefCatalog`, or a `ConeQuery`
        function (for tests and other stores).
    max_offset_arcmin : float, optional
        Largest pointing error searched (arcmin).
    sip_degree : int, "auto" or None, optional
        SIP distortion degree (see `obsctl.processing.astrometry.match_and_fit`).
    match_radius_px : float, optional
        Largest detection-to-star distance of a match (pixel).
    scale_tolerance : float, optional
        Largest relative error of the header's pixel scale.
    bands : mapping, optional
        Filter name to catalogue band (``[catalogs] bands``), over the built-in names of
        `obsctl.store.refcat.filter_band`. The band used is written as ``ZPBAND`` (and the
        catalogue of the matched stars as ``ZPCAT``) in the header.

    Notes
    -----
    Stars of a `RefCatalog` with proper motions are moved to the frame's epoch (its
    ``DATE-OBS``) before matching.
    """

    name: ClassVar[str] = "astrometry"

    catalog: RefCatalog | ConeQuery
    _: KW_ONLY
    max_offset_arcmin: float = 10.0
    sip_degree: int | Literal["auto"] | None = "auto"
    match_radius_px: float = 3.0
    scale_tolerance: float = 0.05
    bands: Mapping[str, str] = field(default_factory=dict)

    def process(self, frame: Frame) -> Frame:
        """Return the frame with a fitted WCS, sky positions and reference magnitudes.

        Never raises for an unsolvable frame: it is flagged ``"astrometry failed: ..."``
        instead, with positions from the approximate WCS.
        """
        sources = frame.sources
        names = () if sources is None else (sources.dtype.names or ())
        if sources is None or "x" not in names or "y" not in names:
            return self._failed(frame, None, "no detected sources (photometry must run first)")
        approx = _approximate_wcs(frame.header)
        if approx is None:
            return self._failed(frame, None, "the header has no approximate WCS")

        filter_name = frame.header.get("FILTER")
        band = reference_band(str(filter_name), self.bands) if filter_name is not None else None
        ny, nx = frame.data.shape[:2]
        try:
            refs = self._reference_stars(
                approx, (ny, nx), band or "V", len(sources), _epoch_yr(frame.header)
            )
        except Exception as exc:  # a broken store must not stop the frame: flag it
            log.warning("reference catalog query failed: %s", exc)
            return self._failed(frame, approx, f"reference catalog query failed: {exc}")

        if len(refs) == 0:
            return self._failed(
                frame,
                approx,
                "no reference stars around the field (fill the catalog with "
                "`obsctl catalog fetch`, `obsctl catalog import` or "
                "`obsctl catalog import-synthetic`; the frame is queued again when a fetch "
                "brings its field)",
            )
        flux = (
            np.asarray(sources["flux"], dtype=np.float64)
            if "flux" in names
            else np.zeros(len(sources))
        )
        order = np.argsort(-np.nan_to_num(flux, nan=-np.inf), kind="stable")
        if "flags" in names:
            # Cosmic rays, hot pixels and artifacts (classify stage) are not in any catalog.
            order = order[(sources["flags"][order] & FLAG_NOT_CELESTIAL) == 0]
        xy = np.column_stack([sources["x"], sources["y"]]).astype(np.float64)[order]
        sky = np.column_stack([refs["ra_deg"], refs["dec_deg"]]).astype(np.float64)
        try:
            result = match_and_fit(
                xy,
                sky,
                approx,
                image_shape=(ny, nx),
                max_offset_arcmin=self.max_offset_arcmin,
                sip_degree=self.sip_degree,
                match_radius_px=self.match_radius_px,
                scale_tolerance=self.scale_tolerance,
            )
        except NoSolution as exc:
            log.info("frame %s: astrometry failed: %s", frame.exposure_id, exc)
            return self._failed(frame, approx, str(exc))

        header = _solved_header(frame.header, result)
        det_idx = order[result.matches[0]]
        ref_idx = result.matches[1]
        out = _with_columns(sources)
        ra, dec = result.wcs.all_pix2world(out["x"], out["y"], 0)
        out["ra_deg"] = ra
        out["dec_deg"] = dec
        ref_names = refs.dtype.names or ()
        if "id" in ref_names:
            out["ref_id"][det_idx] = refs["id"][ref_idx]
        if band is not None:
            mag, err = band_magnitudes(refs, band)
            out["ref_mag"][det_idx] = mag[ref_idx]
            out["ref_mag_err"][det_idx] = err[ref_idx]
            header["ZPBAND"] = (band, "catalogue band of the reference magnitudes")
            if "catalog" in ref_names and len(ref_idx):
                used, counts = np.unique(refs["catalog"][ref_idx], return_counts=True)
                catalog = used[np.argmax(counts)]
                text = catalog.decode("ascii") if isinstance(catalog, bytes) else str(catalog)
                header["ZPCAT"] = (text, "reference catalogue of most matched stars")
        # Each band's colour term is against its own standard colour index (V-R for R...).
        colour = band_colour(refs, band)
        if colour is not None:
            out["ref_colour"][det_idx] = colour[0][ref_idx]
            header["ZPCOLOR"] = (colour[1], "colour index of the colour term")

        metrics = {
            **frame.metrics,
            "wcs_rms_px": result.rms_px,
            "wcs_rms_arcsec": result.rms_arcsec,
            "wcs_matched": float(result.n_matched),
            "wcs_offset_arcmin": result.offset_arcmin,
            "wcs_rotation_deg": result.rotation_deg,
            "wcs_sip_degree": float(result.sip_degree or 0),
        }
        solved = frame
        if filter_name is not None and band is None:
            solved = solved.flagged(f"astrometry: no reference band for filter {filter_name!r}")
        if result.flipped:
            solved = solved.flagged("astrometry: image is mirrored relative to the header WCS")
        return solved.with_stage(self.name, header=header, sources=out, metrics=metrics)

    def _reference_stars(
        self,
        approx: WCS,
        shape: tuple[int, int],
        band: str,
        n_sources: int,
        epoch_yr: float | None = None,
    ) -> NDArray[Any]:
        ny, nx = shape
        ra_c, dec_c = (float(v) for v in approx.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0))
        scale_deg = math.sqrt(abs(float(np.linalg.det(approx.pixel_scale_matrix))))
        radius = (
            0.5 * math.hypot(nx, ny) * scale_deg * (1.0 + self.scale_tolerance)
            + self.max_offset_arcmin / 60.0
        ) * _RADIUS_MARGIN
        radius = min(radius, 180.0)
        limit = max(_MIN_REFS, _REFS_PER_SOURCE * n_sources)
        if isinstance(self.catalog, RefCatalog):
            return self.catalog.cone(ra_c, dec_c, radius, band=band, limit=limit, epoch_yr=epoch_yr)
        stars = self.catalog(ra_c, dec_c, radius)
        mag, _ = band_magnitudes(stars, band)
        for column in ("mag_v", "mag_gaia_g", *MAG_COLUMNS):
            missing = np.isnan(mag)
            if not missing.any() or column not in (stars.dtype.names or ()):
                continue
            mag[missing] = stars[column][missing].astype(np.float64) + 1000.0
        order = np.argsort(np.nan_to_num(mag, nan=np.inf), kind="stable")[:limit]
        return stars[order]

    def _failed(self, frame: Frame, approx: WCS | None, reason: str) -> Frame:
        sources = frame.sources
        metrics = {**frame.metrics, "wcs_matched": 0.0}
        if sources is not None and {"x", "y"} <= set(sources.dtype.names or ()):
            sources = _with_columns(sources)
            if approx is not None:
                ra, dec = approx.all_pix2world(sources["x"], sources["y"], 0)
                sources["ra_deg"] = ra
                sources["dec_deg"] = dec
        return frame.flagged(f"astrometry failed: {reason}").with_stage(
            self.name, sources=sources, metrics=metrics
        )


def _epoch_yr(header: fits.Header) -> float | None:
    """Return the Julian epoch of a header's DATE-OBS (yr), None when absent or unreadable."""
    from astropy.time import Time

    value = header.get("DATE-OBS")
    if not value:
        return None
    try:
        return float(Time(str(value), scale="utc").jyear)
    except ValueError:
        log.debug("DATE-OBS %r unreadable: reference stars stay at their epoch", value)
        return None


def _with_columns(sources: NDArray[Any]) -> NDArray[Any]:
    """Return a copy of the sources with the stage's columns added (or reset) as NaN / -1."""
    return with_columns(
        sources,
        {
            n: np.full(len(sources), -1 if kind is np.int64 else np.nan, kind)
            for n, kind in _NEW_COLUMNS
        },
    )


def _solved_header(header: fits.Header, result: AstrometryResult) -> fits.Header:
    """Return a copy of the header with the approximate WCS replaced by the fitted one."""
    out = strip_wcs(header)
    fitted = result.wcs.to_header(relax=True)
    # Written as a CD matrix, like the raw header's approximate WCS, not as PC plus CDELT.
    for key in [k for k in fitted if re.match(r"^(PC\d_\d|CDELT\d|MJDREF)$", k)]:
        fitted.remove(key, remove_all=True)
    cd = result.wcs.pixel_scale_matrix
    fitted.insert("CUNIT1", ("CD1_1", float(cd[0, 0]), "[deg/px] fitted linear transform"))
    fitted.insert("CUNIT1", ("CD1_2", float(cd[0, 1]), "[deg/px] fitted linear transform"))
    fitted.insert("CUNIT1", ("CD2_1", float(cd[1, 0]), "[deg/px] fitted linear transform"))
    fitted.insert("CUNIT1", ("CD2_2", float(cd[1, 1]), "[deg/px] fitted linear transform"))
    fitted["WCSAXES"] = (2, "WCS fitted to reference stars")
    out.update(fitted)
    out["WCSRMS"] = (round(result.rms_arcsec, 4), "[arcsec] WCS fit residual rms")
    out["WCSRMSPX"] = (round(result.rms_px, 4), "[px] WCS fit residual rms")
    out["WCSNMAT"] = (result.n_matched, "reference stars matched in the WCS fit")
    return out
