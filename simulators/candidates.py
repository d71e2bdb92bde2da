"""Difference-imaging candidates of one field over a few frames, at catalog level.

What the subtraction stage would hand to moving-object linking, without rendering pixels:
asteroids at their exact positions (`obsctl.simulators.transients.Asteroid.position` at each
frame's middle), static transients recurring at one position in every frame, and bogus
detections (noise peaks, residuals of stars, cosmic rays) scattered uniformly over the field
at the detection limit. Positions are perturbed by centroid errors consistent with each
detection's S/N, the seeing and, for an asteroid, its trail; shapes (elongation and axis) are
those a trail of the asteroid's length gives. One factory, `moving_field`, serves the tests
and the benchmark of `obsctl.timeseries.moving`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from obsctl.simulators.transients import Asteroid, offset_position
from obsctl.timeseries.moving import DETECTION_DTYPE

log = logging.getLogger(__name__)

__all__ = ["BOGUS", "STATIC", "CandidateField", "moving_field", "random_asteroids"]

BOGUS = -1
"""``CandidateField.source`` of a bogus detection."""
STATIC = -2
"""``CandidateField.source`` of a static transient's detection."""

_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_ASTROMETRY_FLOOR_ARCSEC = 0.05  # the reference catalog and the WCS fit, per axis


@dataclass(frozen=True)
class CandidateField:
    """Candidates of one field and their truth.

    Parameters
    ----------
    detections : numpy.ndarray
        The candidates, `obsctl.timeseries.moving.DETECTION_DTYPE`, frame after frame in a
        random order within each frame.
    source : numpy.ndarray of int
        Per detection: the index of its asteroid in `asteroids`, `STATIC` or `BOGUS`.
    asteroids : tuple of Asteroid
        The asteroids (their epoch is the middle of the frames).
    frame_mjd : numpy.ndarray of float64
        Middle of each frame's exposure (MJD, UTC).
    """

    detections: NDArray[np.void]
    source: NDArray[np.intp]
    asteroids: tuple[Asteroid, ...]
    frame_mjd: NDArray[np.float64]


def random_asteroids(
    rng: np.random.Generator,
    n: int,
    *,
    ra_deg: float,
    dec_deg: float,
    epoch_mjd: float,
    half_width_arcsec: float,
    rate_range_arcsec_min: tuple[float, float] = (1.0, 60.0),
    mag_range: tuple[float, float] = (17.0, 21.0),
) -> list[Asteroid]:
    """Draw asteroids at the epoch uniformly over a square field, rates uniform in a range.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Number of asteroids.
    ra_deg, dec_deg : float
        Centre of the field (deg).
    epoch_mjd : float
        Epoch of the drawn positions (MJD).
    half_width_arcsec : float
        Half the side of the square they are drawn in (arcsec).
    rate_range_arcsec_min : tuple of float, optional
        Range of the uniform rates (arcsec per minute).
    mag_range : tuple of float, optional
        Range of the uniform V magnitudes (mag).

    Returns
    -------
    list of Asteroid
        Named ``A000``, ``A001``...
    """
    dx = rng.uniform(-half_width_arcsec, half_width_arcsec, n)
    dy = rng.uniform(-half_width_arcsec, half_width_arcsec, n)
    ra, dec = offset_position(ra_deg, dec_deg, np.hypot(dx, dy), np.degrees(np.arctan2(dx, dy)))
    rates = rng.uniform(*rate_range_arcsec_min, n)
    pas = rng.uniform(0.0, 360.0, n)
    mags = rng.uniform(*mag_range, n)
    return [
        Asteroid(
            f"A{i:03d}",
            float(ra[i]),
            float(dec[i]),
            epoch_mjd,
            float(rates[i]),
            float(pas[i]),
            float(mags[i]),
        )
        for i in range(n)
    ]


def moving_field(
    seed: int,
    *,
    asteroids: Sequence[Asteroid] | None = None,
    n_asteroids: int = 40,
    rate_range_arcsec_min: tuple[float, float] = (1.0, 60.0),
    n_bogus: int = 300,
    n_static: int = 20,
    n_frames: int = 4,
    cadence_min: float = 4.0,
    exposure_s: float = 30.0,
    ra_deg: float = 150.0,
    dec_deg: float = 30.0,
    half_width_arcsec: float = 900.0,
    fwhm_arcsec: float = 2.5,
    limit_mag: float = 21.5,
    start_mjd: float = 60400.1,
    drop_fraction: float = 0.0,
    snr_limit: float = 5.0,
) -> CandidateField:
    """Simulate the candidates of a field over a few frames.

    Parameters
    ----------
    seed : int
        Seed of everything random.
    asteroids : sequence of Asteroid, optional
        The asteroids; drawn by `random_asteroids` (epoch the middle of the frames, within
        two thirds of the field's half width of its centre) when None.
    n_asteroids : int, optional
        How many to draw when `asteroids` is None.
    rate_range_arcsec_min : tuple of float, optional
        Their rates' range (arcsec per minute) when drawn.
    n_bogus : int, optional
        Bogus detections per frame, uniform over the field at S/N 5-7.
    n_static : int, optional
        Static transients, detected in every frame at one position.
    n_frames : int, optional
        Number of frames.
    cadence_min : float, optional
        Time between the frames' starts (minutes).
    exposure_s : float, optional
        Exposure time (s): an asteroid trails its rate times this.
    ra_deg, dec_deg : float, optional
        Centre of the field (deg).
    half_width_arcsec : float, optional
        Half the side of the square field (arcsec).
    fwhm_arcsec : float, optional
        Seeing (arcsec).
    limit_mag : float, optional
        Magnitude of a point source at S/N 5 (mag); a trail's S/N falls as its light spreads.
    start_mjd : float, optional
        Start of the first exposure (MJD, UTC).
    drop_fraction : float, optional
        Fraction of the asteroids' detections lost at random (a star in the way, a gap).
    snr_limit : float, optional
        Detection threshold: an asteroid's or a static transient's detection whose measured
        S/N falls below it is lost (a trail spreads an asteroid's light; a fast faint one is
        missed).

    Returns
    -------
    CandidateField
        The detections and their truth.
    """
    rng = np.random.default_rng(seed)
    seconds = np.arange(n_frames, dtype=np.float64) * cadence_min * 60.0 + exposure_s / 2.0
    frame_mjd: NDArray[np.float64] = start_mjd + seconds / 86400.0
    if asteroids is None:
        asteroids = random_asteroids(
            rng,
            n_asteroids,
            ra_deg=ra_deg,
            dec_deg=dec_deg,
            epoch_mjd=float(np.mean(frame_mjd)),
            half_width_arcsec=2.0 * half_width_arcsec / 3,
            rate_range_arcsec_min=rate_range_arcsec_min,
        )
    sigma_psf = fwhm_arcsec * _SIGMA_PER_FWHM
    static_dx = rng.uniform(-half_width_arcsec, half_width_arcsec, (2, n_static))
    static_mag = rng.uniform(17.0, 21.0, n_static)
    parts: list[NDArray[np.void]] = []
    sources: list[NDArray[np.intp]] = []
    for frame, mjd in enumerate(frame_mjd.tolist()):
        rows: list[tuple[float, ...]] = []
        src: list[int] = []
        for k, asteroid in enumerate(asteroids):
            if rng.random() < drop_fraction:
                continue
            ra_a, dec_a = asteroid.position(mjd)
            length = asteroid.rate_arcsec_min * exposure_s / 60.0
            row = _detection(
                rng,
                frame,
                mjd,
                float(ra_a),
                float(dec_a),
                asteroid.mag_v,
                length,
                asteroid.pa_deg,
                sigma_psf=sigma_psf,
                limit_mag=limit_mag,
            )
            if row[6] < snr_limit:
                continue
            rows.append(row)
            src.append(k)
        for k in range(n_static):
            ra, dec = _at(ra_deg, dec_deg, static_dx[0, k], static_dx[1, k])
            row = _detection(
                rng,
                frame,
                mjd,
                ra,
                dec,
                float(static_mag[k]),
                0.0,
                0.0,
                sigma_psf=sigma_psf,
                limit_mag=limit_mag,
            )
            if row[6] < snr_limit:
                continue
            rows.append(row)
            src.append(STATIC)
        for _ in range(n_bogus):
            dx, dy = rng.uniform(-half_width_arcsec, half_width_arcsec, 2)
            ra, dec = _at(ra_deg, dec_deg, dx, dy)
            # At the limit, S/N 5-7; cosmic rays and residuals are often elongated.
            mag = limit_mag - 2.5 * math.log10(rng.uniform(1.0, 1.4))
            row = _detection(rng, frame, mjd, ra, dec, mag, 0.0, 0.0,
                             sigma_psf=sigma_psf, limit_mag=limit_mag)  # fmt: skip
            rows.append((*row[:-2], 1.0 + abs(rng.normal(0.0, 0.4)), rng.uniform(0.0, 180.0)))
            src.append(BOGUS)
        order = rng.permutation(len(rows))
        parts.append(np.array([rows[i] for i in order], dtype=DETECTION_DTYPE))
        sources.append(np.asarray(src, dtype=np.intp)[order])
    return CandidateField(
        detections=np.concatenate(parts),
        source=np.concatenate(sources),
        asteroids=tuple(asteroids),
        frame_mjd=frame_mjd,
    )


def _at(ra_deg: float, dec_deg: float, dx: float, dy: float) -> tuple[float, float]:
    """Position at offsets east and north (arcsec) of a centre, along a great circle."""
    ra, dec = offset_position(ra_deg, dec_deg, math.hypot(dx, dy), math.degrees(math.atan2(dx, dy)))
    return float(ra), float(dec)


def _detection(
    rng: np.random.Generator,
    frame: int,
    mjd: float,
    ra_deg: float,
    dec_deg: float,
    mag: float,
    length_arcsec: float,
    pa_deg: float,
    *,
    sigma_psf: float,
    limit_mag: float,
) -> tuple[float, ...]:
    """One measured detection: centroid, magnitude and shape perturbed by its noise."""
    # The image's second moment along a trail grows by L^2 / 12; its light spreads over
    # that length, so its S/N falls with the square root of the area it covers.
    sigma_along = math.sqrt(sigma_psf**2 + length_arcsec**2 / 12.0)
    snr = 5.0 * 10.0 ** (-0.4 * (mag - limit_mag)) * math.sqrt(sigma_psf / sigma_along)
    err_across = math.hypot(sigma_psf / snr, _ASTROMETRY_FLOOR_ARCSEC)
    err_along = math.hypot(sigma_along / snr, _ASTROMETRY_FLOOR_ARCSEC)
    pa = math.radians(pa_deg)
    along, across = rng.normal(0.0, err_along), rng.normal(0.0, err_across)
    dx = along * math.sin(pa) + across * math.cos(pa)
    dy = along * math.cos(pa) - across * math.sin(pa)
    ra, dec = _at(ra_deg, dec_deg, dx, dy)
    mag_err = 2.5 / math.log(10.0) / snr
    return (
        frame,
        mjd,
        ra,
        dec,
        mag + rng.normal(0.0, mag_err),
        mag_err,
        snr + rng.normal(),  # as measured, what a detection threshold cuts on
        err_along,
        sigma_along / sigma_psf,
        pa_deg % 180.0 if length_arcsec > 0.0 else rng.uniform(0.0, 180.0),
    )
