"""Pipeline stage: difference imaging of a frame against its field's reference image.

For a light frame whose field (target, filter and camera, as logged) has a current reference
image (`obsctl.pipeline.reference`), after astrometry and the zero point:

1. the frame's background (SEP) is subtracted;
2. the reference is resampled onto the frame's grid (`obsctl.processing.alignment`);
3. both PSFs are measured at the frame's bright, unsaturated stars, and the flux ratio from
   the same stars' fluxes in both images;
4. ZOGY subtraction gives the difference, its noise and its score image
   (`obsctl.processing.subtraction`);
5. candidates are the score's peaks beyond ``threshold_sigma`` (brighter or fainter than in
   the reference), measured by forced PSF photometry on the difference, as are the field's
   monitored targets whether detected or not;
6. each candidate keeps three cutouts (new, reference, difference) for the real/bogus
   classifier and the quick-look page.

A frame without a reference is left as it is (it is not an error: a new field has none until
enough good frames exist). The results travel in `Frame.difference`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import sep
from astropy.wcs import WCS, FITSFixedWarning
from numpy.typing import NDArray

from obsctl.classify.realbogus import RealBogusClassifier
from obsctl.errors import ReferenceImageError, StageError
from obsctl.frame import DifferenceOutcome, Frame
from obsctl.pipeline.reference import ReferenceImage, read_reference, zero_point_ratio
from obsctl.processing.alignment import align_reference
from obsctl.processing.reference_stack import flux_scale
from obsctl.processing.subtraction import (
    detect_transients,
    estimate_psf,
    forced_photometry,
    saturation_mask,
    subtract_zogy,
)
from obsctl.store.candidates import field_transients
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.references import current_reference

__all__ = [
    "CANDIDATE_DTYPE",
    "CUTOUT_PX",
    "Difference",
    "MonitoredPosition",
    "difference_frame",
]

log = logging.getLogger(__name__)

#: Side of the three cutouts kept per candidate (pixel, odd).
CUTOUT_PX = 21

#: One row per candidate or forced target: position (zero-based pixel and deg), the peak
#: score (signed: negative for a source fainter than in the reference), the forced PSF flux
#: on the difference (new-frame ADU) with its error and S/N, its magnitude (from PHOTZP;
#: NaN when the flux is not positive), the name of the monitored target or known transient
#: forced ("" for a detection) with the transient's id (-1 for none), and the real/bogus
#: classifier's probability that a detection is real (NaN for forced rows, or without one).
CANDIDATE_DTYPE = np.dtype(
    [
        ("x", np.float64),
        ("y", np.float64),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("score", np.float64),
        ("flux", np.float64),
        ("flux_err", np.float64),
        ("snr", np.float64),
        ("mag", np.float64),
        ("mag_err", np.float64),
        ("target", "U68"),
        ("transient_id", np.int64),
        ("real_bogus", np.float64),
    ]
)

# PSF and flux-ratio stars: at least this S/N in the frame's catalog, and at most this many
# (the brightest unsaturated ones).
_PSF_MIN_SNR = 20.0
_PSF_MAX_STARS = 60
# Stamps of the PSFs: four FWHM hold > 99.5 % of a Moffat profile. The widest stamp must
# leave the subtraction's 512 px tiles an interior (`subtract_zogy`): a frame of seeing
# broader than 10 px is not worth a difference.
_PSF_RADIUS_FWHM = 4.0

_MAX_FWHM_PX = 10.0


@dataclass(frozen=True)
class MonitoredPosition:
    """A monitored target forced on every difference of its field.

    Parameters
    ----------
    name : str
        The target's name.
    field : str
        The exposures' target (``OBJECT``) whose frames show it.
    ra_deg, dec_deg : float
        Its position (deg, ICRS).
    transient_id : int or None, optional
        For a known transient (`obsctl.timeseries.transients`), its id.
    """

    name: str
    field: str
    ra_deg: float
    dec_deg: float
    transient_id: int | None = None


def _wcs(frame: Frame) -> WCS:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(frame.header, naxis=2)
    return wcs


def _psf_stars(
    sources: NDArray[Any], saturation_adu: float | None, shape: tuple[int, int], margin: int
) -> NDArray[Any]:
    """Return the frame's bright, unsaturated, unflagged stars (catalog rows), brightest first."""
    keep = np.isfinite(sources["x"]) & np.isfinite(sources["y"]) & (sources["flags"] == 0)
    keep &= sources["snr"] >= _PSF_MIN_SNR
    if "source_class" in (sources.dtype.names or ()):
        keep &= sources["source_class"] == "star"
    if saturation_adu is not None:
        keep &= sources["peak"] + sources["background"] < 0.7 * saturation_adu
    height, width = shape
    keep &= (sources["x"] > margin) & (sources["x"] < width - 1 - margin)
    keep &= (sources["y"] > margin) & (sources["y"] < height - 1 - margin)
    chosen: NDArray[Any] = sources[keep]
    return chosen[np.argsort(-chosen["flux"])][:_PSF_MAX_STARS]


def _cutouts(
    images: Sequence[NDArray[np.float32]], x: NDArray[np.float64], y: NDArray[np.float64]
) -> NDArray[np.float32]:
    """Return ``(n, len(images), CUTOUT_PX, CUTOUT_PX)`` stamps centred on each position.

    Pixels beyond the frame are NaN.
    """
    half = CUTOUT_PX // 2
    out = np.full((len(x), len(images), CUTOUT_PX, CUTOUT_PX), np.nan, dtype=np.float32)
    height, width = images[0].shape
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        ix, iy = round(float(xi)), round(float(yi))
        ya, yb = max(0, iy - half), min(height, iy + half + 1)
        xa, xb = max(0, ix - half), min(width, ix + half + 1)
        if ya >= yb or xa >= xb:
            continue
        for k, image in enumerate(images):
            out[i, k, ya - (iy - half) : yb - (iy - half), xa - (ix - half) : xb - (ix - half)] = (
                image[ya:yb, xa:xb]
            )
    return out


def _magnitudes(
    flux: NDArray[np.float64], flux_err: NDArray[np.float64], frame: Frame, aperture_share: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return magnitudes of PSF fluxes on the difference (new-frame ADU).

    The frame's zero point (``PHOTZP``, e-/s) is for the main aperture's flux, which holds
    ``aperture_share`` of a PSF flux: the aperture correction, measured on the frame's stars.
    """
    zp = frame.header.get("PHOTZP")
    exptime = frame.header.get("EXPTIME")
    gain = frame.gain_e_per_adu or 1.0
    if not isinstance(zp, int | float) or not isinstance(exptime, int | float) or exptime <= 0:
        return np.full(flux.shape, np.nan), np.full(flux.shape, np.nan)
    with np.errstate(all="ignore"):
        rate = aperture_share * flux * gain / float(exptime)
        mag = np.where(flux > 0, float(zp) - 2.5 * np.log10(rate), np.nan)
        mag_err = np.where(flux > 0, 2.5 / math.log(10.0) * flux_err / flux, np.nan)
    return mag, mag_err


def difference_frame(
    frame: Frame,
    ref: ReferenceImage,
    *,
    reference_id: int = 0,
    targets: Sequence[MonitoredPosition] = (),
    threshold_sigma: float = 5.0,
    max_candidates: int = 200,
    saturation_adu: float | None = None,
    real_bogus: RealBogusClassifier | None = None,
) -> DifferenceOutcome:
    """Subtract a reference from a measured, solved frame; find and measure candidates.

    The stage's work without the exposure log (the real/bogus classifier's training calls it
    on simulated frames, so that its cutouts are the stage's).

    Parameters
    ----------
    frame : Frame
        A calibrated frame after photometry and astrometry (catalog, FWHM, WCS in the header,
        gain, zero point ``PHOTZP``).
    ref : ReferenceImage
        The field's reference.
    reference_id : int, optional
        Its id, recorded in the outcome.
    targets : sequence of MonitoredPosition, optional
        Positions forced whether detected or not (those off the frame are left out).
    threshold_sigma, max_candidates, saturation_adu
        As for `Difference`.
    real_bogus : RealBogusClassifier or None, optional
        Scores the detections (`CANDIDATE_DTYPE` ``real_bogus``); None leaves them NaN.

    Returns
    -------
    DifferenceOutcome
        The candidates, then the forced targets, with their cutouts.

    Raises
    ------
    ValueError
        When the frame has no catalog or WCS, its seeing is too broad, or too few stars give
        the PSFs and the flux ratio; the message says which.
    """
    if frame.sources is None or frame.fwhm_px is None:
        raise ValueError("no source catalog: photometry must run before difference")
    wcs = _wcs(frame)
    if not wcs.has_celestial:
        raise ValueError("no WCS: astrometry must run before difference")
    if frame.fwhm_px > _MAX_FWHM_PX:
        raise ValueError(f"seeing FWHM {frame.fwhm_px:.1f} px is broader than {_MAX_FWHM_PX:g} px")
    data = np.ascontiguousarray(frame.data, dtype=np.float32)
    # Two kinds of bad pixels. Isolated ones (the classifier's cosmic rays and hot pixels,
    # the calibration's bad pixels) are set to the sky: a pixel of sky leaves no residual,
    # where masking it would blank the PSF stamp's width around it (a hot pixel within 10
    # px hid a supernova on every other frame). Saturated stars are masked: their flat
    # cores would subtract as rings.
    isolated = ~np.isfinite(data) if frame.mask is None else (frame.mask | ~np.isfinite(data))
    bad = (
        saturation_mask(data, saturation_adu)
        if saturation_adu is not None
        else np.zeros(data.shape, dtype=bool)
    )
    skip = isolated | bad
    background = sep.Background(data, mask=skip)  # masked values, NaN included, unread
    new = data - background.back(dtype=np.float32)
    new[isolated] = 0.0
    aligned = align_reference(
        ref.image, reference_wcs=ref.wcs, target_wcs=wcs, target_shape=data.shape,
        mask=~np.isfinite(ref.image),
    )  # fmt: skip
    radius = max(3, math.ceil(_PSF_RADIUS_FWHM * frame.fwhm_px))
    stars = _psf_stars(frame.sources, saturation_adu, data.shape, radius + 4)
    x, y = stars["x"].astype(np.float64), stars["y"].astype(np.float64)
    try:
        psf_new = estimate_psf(new, x, y, radius_px=radius, mask=skip)
        psf_ref = estimate_psf(aligned.image, x, y, radius_px=radius, mask=aligned.mask)
    except ValueError as exc:
        raise ValueError(f"PSF: {exc} ({len(x)} stars of S/N >= {_PSF_MIN_SNR:g})") from exc
    aperture = 3.0 * frame.fwhm_px
    f_new, _, _ = sep.sum_circle(new, x, y, aperture, mask=skip)
    f_ref, _, _ = sep.sum_circle(aligned.image, x, y, aperture, mask=aligned.mask)
    ratio = flux_scale(f_new, f_ref, min_stars=3)
    if ratio is None:  # too few stars: the zero points say it (the reference's units are ADU)
        ratio = zero_point_ratio(ref.header, frame.header)
        ratio = None if ratio is None else 1.0 / ratio
    if ratio is None:
        raise ValueError(
            f"flux ratio: fewer than 3 of {len(x)} stars measured in both images, and no "
            "zero points"
        )
    gain = frame.gain_e_per_adu
    # The reference's noise is nearly uniform (its frames cover it alike): its median is
    # what ZOGY takes, and resampling a variance map for it would cost half the alignment.
    sigma_ref = ref.sky_noise
    # The reference's electrons per unit: its unit is one frame's ADU, scaled by the flux
    # ratio, and it holds about NCOMBINE frames' electrons (its source noise is that much
    # smaller); an approximation good enough for ZOGY's source-noise term.
    n_combined = int(ref.header.get("NCOMBINE", 1))
    gain_ref = None if gain is None else gain * n_combined / ratio
    result = subtract_zogy(
        new, aligned.image, psf_new=psf_new, psf_ref=psf_ref,
        sigma_new=float(background.globalrms), sigma_ref=sigma_ref, flux_ratio=ratio,
        gain_new=gain, gain_ref=gain_ref, mask=bad | aligned.mask,
    )  # fmt: skip
    found_rows = detect_transients(result.score, threshold=threshold_sigma, mask=result.mask)
    truncated = max(0, len(found_rows) - max_candidates)
    found_rows = found_rows[:max_candidates]
    # The frame's monitored targets inside it, forced whether detected or not.
    mine = list(targets)
    tx, ty = (
        np.asarray(a, dtype=np.float64)
        for a in wcs.all_world2pix([t.ra_deg for t in mine], [t.dec_deg for t in mine], 0)
    )
    height, width = data.shape
    inside = (tx >= 0) & (tx <= width - 1) & (ty >= 0) & (ty <= height - 1)
    mine = [t for t, keep in zip(mine, inside, strict=True) if keep]
    xs = np.concatenate([found_rows["x"], tx[inside]])
    ys = np.concatenate([found_rows["y"], ty[inside]])
    phot = forced_photometry(
        result.difference, result.noise, result.psf_at, xs, ys, mask=result.mask
    )
    # The aperture correction: the stars' catalog (main-aperture) flux over their PSF
    # flux measured the way the difference is.
    noise_new = np.broadcast_to(np.float32(background.globalrms), data.shape)
    psf_flux = forced_photometry(new, noise_new, psf_new, x, y, mask=skip).flux
    share = flux_scale(psf_flux, stars["flux"].astype(np.float64))
    mag, mag_err = _magnitudes(
        phot.flux, phot.flux_err, frame, share if share is not None else math.nan
    )
    ra, dec = wcs.all_pix2world(xs, ys, 0) if len(xs) else (xs, ys)
    rows = np.zeros(len(xs), dtype=CANDIDATE_DTYPE)
    rows["x"], rows["y"], rows["ra_deg"], rows["dec_deg"] = xs, ys, ra, dec
    rows["score"][: len(found_rows)] = found_rows["score"]
    forced = slice(len(found_rows), None)
    rows["score"][forced] = result.score[np.round(ys[forced]).astype(int),
                                         np.round(xs[forced]).astype(int)]  # fmt: skip
    rows["flux"], rows["flux_err"], rows["snr"] = phot.flux, phot.flux_err, phot.snr
    rows["mag"], rows["mag_err"] = mag, mag_err
    rows["target"][forced] = [t.name for t in mine]
    rows["transient_id"] = -1
    rows["transient_id"][forced] = [-1 if t.transient_id is None else t.transient_id for t in mine]
    cutouts = _cutouts([new, aligned.image, result.difference], xs, ys)
    cutouts[:, 1] /= np.float32(ratio)  # the reference in the new frame's units
    rows["real_bogus"] = np.nan
    n = len(found_rows)
    if real_bogus is not None and n:
        rows["real_bogus"][:n] = real_bogus.score(cutouts[:n], rows[:n], frame.fwhm_px)
    outcome = DifferenceOutcome(
        reference_id=reference_id,
        candidates=rows,
        cutouts=cutouts,
        detections=len(found_rows),
        truncated=truncated,
        flux_ratio=ratio,
        sky_noise=result.sky_noise,
    )
    return outcome


class Difference:
    """Pipeline stage: ZOGY difference against the field's reference, candidates and cutouts.

    Parameters
    ----------
    log_path : str or pathlib.Path
        The exposure log's database (the frame's field and its reference), opened on first
        use so that the stage can be built in a worker process.
    data_dir : str or pathlib.Path
        The data directory reference paths are relative to.
    threshold_sigma : float, optional
        Detection threshold on the score image (sigma).
    max_candidates : int, optional
        At most this many candidates per frame, the strongest: a failed subtraction (a
        frame of clouds, a bad WCS) must not flood the database.
    targets : sequence of MonitoredPosition, optional
        Monitored targets, forced on the differences of their fields.
    saturation_adu : float or None, optional
        Pixels near it are masked (saturated stars); stars peaking above 70 % of it are not
        used for the PSFs.
    real_bogus_model : str, pathlib.Path or None, optional
        The real/bogus classifier's ONNX model (`obsctl.classify.realbogus`), loaded on first
        use; None for the shipped one.
    """

    name = "difference"

    def __init__(
        self,
        log_path: str | Path,
        data_dir: str | Path,
        *,
        threshold_sigma: float = 5.0,
        max_candidates: int = 200,
        targets: Sequence[MonitoredPosition] = (),
        saturation_adu: float | None = None,
        real_bogus_model: str | Path | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.data_dir = Path(data_dir)
        self.threshold_sigma = threshold_sigma
        self.max_candidates = max_candidates
        self.targets = tuple(targets)
        self.saturation_adu = saturation_adu
        self.real_bogus_model = real_bogus_model
        self._log_db: ExposureLog | None = None
        self._reference: tuple[int, ReferenceImage] | None = None
        self._real_bogus: RealBogusClassifier | None = None

    def close(self) -> None:
        """Close the exposure log and drop the cached reference."""
        if self._log_db is not None:
            self._log_db.close()
        self._log_db = None
        self._reference = None

    def _reference_of(self, exposure_id: int) -> tuple[dict[str, Any], ReferenceImage] | None:
        if self._log_db is None:
            self._log_db = ExposureLog(self.log_path)
        rows = self._log_db.query(
            "SELECT target, filter, camera, image_type FROM exposures WHERE id = ?",
            (exposure_id,),
        )
        if not rows or rows[0]["image_type"] != "LIGHT" or rows[0]["target"] is None:
            return None
        row = rows[0]
        record = current_reference(self._log_db, row["target"], row["filter"], row["camera"])
        if record is None:
            return None
        # One reference per worker in memory: a worker meets the frames of one field in a row.
        if self._reference is None or self._reference[0] != record["id"]:
            self._reference = (record["id"], read_reference(self.data_dir / record["path"]))
        return {**record, "target": row["target"]}, self._reference[1]

    def _classifier(self) -> RealBogusClassifier:
        """Return the real/bogus classifier, loaded once per worker."""
        if self._real_bogus is None:
            self._real_bogus = RealBogusClassifier(self.real_bogus_model)
        return self._real_bogus

    def _transients(self, field: str) -> list[MonitoredPosition]:
        """Return the field's alerted transients, forced on each of its differences.

        Only alerted ones: a detection seen once (most of them bogus) is not followed.
        """
        assert self._log_db is not None
        return [
            MonitoredPosition(f"transient {t['id']}", field, t["ra_deg"], t["dec_deg"], t["id"])
            for t in field_transients(self._log_db, field)
            if t["alerted"]
        ]

    def process(self, frame: Frame) -> Frame:
        """Return the frame with `Frame.difference` set, or unchanged without a reference.

        Raises
        ------
        StageError
            When the frame has no WCS or catalog yet, its reference cannot be read, or too
            few stars give the PSFs and the flux ratio.
        """

        def fail(message: str) -> StageError:
            return StageError(message, stage=self.name, frame_id=frame.exposure_id)

        if frame.exposure_id is None:
            return frame
        try:
            found = self._reference_of(frame.exposure_id)
        except ReferenceImageError as exc:
            raise fail(str(exc)) from exc
        if found is None:
            return frame
        record, ref = found
        try:
            outcome = difference_frame(
                frame, ref, reference_id=int(record["id"]),
                targets=[
                    *(t for t in self.targets if t.field == record["target"]),
                    *self._transients(record["target"]),
                ],
                threshold_sigma=self.threshold_sigma, max_candidates=self.max_candidates,
                saturation_adu=self.saturation_adu, real_bogus=self._classifier(),
            )  # fmt: skip
        except ValueError as exc:
            raise fail(str(exc)) from exc
        log.debug("difference of frame %s: %d candidates (%d left out)", frame.exposure_id,
                  outcome.detections, outcome.truncated)  # fmt: skip
        return replace(frame, difference=outcome, provenance=(*frame.provenance, self.name))
