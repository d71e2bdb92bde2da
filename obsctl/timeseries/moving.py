"""Moving objects: linking detections of consecutive frames into tracks, and the MPC report.

Difference imaging of a monitored field yields, frame after frame, candidate detections:
real transients (which recur at one position), asteroids (which move at a constant rate along
a great circle over the minutes to hours of a visit) and bogus ones (noise peaks, residuals of
stars, cosmic rays). `link_tracks` finds the detections of different frames that line up in
position and time at rates within a band, and returns them as `Track` records (rate,
direction, magnitude, a prediction of the position at any time); `mpc_report` writes tracks
as observations in the Minor Planet Center's 80-column format.

The linking is plain seed-and-predict: every pair of detections on two frames whose separation
is within the rate band over their time difference seeds a straight-line motion in a tangent
plane of the field (a gnomonic projection maps great circles onto straight lines); the
detection nearest to its predicted position on each other frame joins it; the line is
refitted, the worst points are rejected while the rms residual is too large, and the
candidates are accepted greedily, most detections and smallest residual first, each
detection in at most one track. Detections that recur at one position on different frames
(static transients, residuals of stars) are set aside before seeding: they never move.

Everything here is pure numeric code over numpy arrays: no I/O, no logging.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import ConvexHull, QhullError, cKDTree

__all__ = [
    "DETECTION_DTYPE",
    "MPC_BANDS",
    "Track",
    "link_tracks",
    "mpc_report",
]

DETECTION_DTYPE = np.dtype(
    [
        ("exposure_id", np.int64),
        ("mjd", np.float64),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("mag", np.float64),
        ("mag_err", np.float64),
        ("snr", np.float64),
        ("pos_err_arcsec", np.float64),
        ("elongation", np.float64),
        ("theta_deg", np.float64),
    ]
)
"""Row type of the detections `link_tracks` links, one row per candidate of one frame.

``exposure_id`` names the frame (all the detections of one frame share it); ``mjd`` is the
middle of that frame's exposure (MJD, UTC); ``ra_deg``, ``dec_deg`` the position (ICRS, deg);
``mag``, ``mag_err`` the calibrated magnitude and its error (mag); ``snr`` the detection's
signal to noise ratio. Optional, NaN when unknown, and each may be left out of the array
altogether: ``pos_err_arcsec`` the position's 1-sigma error per axis (arcsec; a trail's
centroid is uncertain by about its length over ``sqrt(12) snr`` along it), ``elongation``
(major over minor axis, >= 1) and ``theta_deg`` (the major axis's position angle, deg east
of north, modulo 180) the shape of a trailed image.
"""

MPC_BANDS: frozenset[str] = frozenset("BVRIJWULHKYGgriwyzocvu")
"""Magnitude bands the Minor Planet Center accepts on new observations (its list, less the
retired ``C`` for an unfiltered magnitude)."""

_ARCSEC_PER_RAD = 180.0 / math.pi * 3600.0
_MIN_PER_DAY = 1440.0
# A detection joins a seed's line within this many times the rms bound: a single point of a
# good track sits up to about 2-3 sigma off, while the rms over the track stays near 1 sigma.
_GATE = 2.0
# An image this elongated is trailed enough for its axis to say which way it moves.
_TRAIL_MIN_ELONGATION = 1.5


@dataclass(frozen=True)
class Track:
    """A moving object: linked detections and a constant-rate great-circle motion.

    Parameters
    ----------
    indices : tuple of int
        Rows of the detections array that make the track, in time order.
    epoch_mjd : float
        Reference epoch of the motion, the mean time of the detections (MJD, UTC).
    ra_deg, dec_deg : float
        Fitted position at `epoch_mjd` (ICRS, deg), RA in [0, 360).
    rate_arcsec_min : float
        Angular rate along the great circle (arcsec per minute).
    pa_deg : float
        Direction of motion at `epoch_mjd` (deg east of north, in [0, 360)).
    mag, mag_err : float
        Mean magnitude of the detections, weighted by their errors, and its error (mag).
    rms_arcsec : float
        Root mean square of the detections' distances from the fitted motion (arcsec).
    chance_tracks : float
        Expected number of tracks of as many detections that chance alignments of the
        field's candidates would make (an estimate within a few times, on the high side);
        small for a real object.
    """

    indices: tuple[int, ...]
    epoch_mjd: float
    ra_deg: float
    dec_deg: float
    rate_arcsec_min: float
    pa_deg: float
    mag: float
    mag_err: float
    rms_arcsec: float
    chance_tracks: float

    @property
    def n_detections(self) -> int:
        """Number of linked detections."""
        return len(self.indices)

    def predict(self, mjd: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Return the predicted position at given times.

        Parameters
        ----------
        mjd : array_like
            Times (MJD, UTC).

        Returns
        -------
        ra_deg, dec_deg : numpy.ndarray of float64
            Position (ICRS, deg) along the great circle leaving the reference position at
            `pa_deg`, at `rate_arcsec_min`; RA in [0, 360).
        """
        minutes = (np.asarray(mjd, dtype=np.float64) - self.epoch_mjd) * _MIN_PER_DAY
        return _offset(self.ra_deg, self.dec_deg, self.rate_arcsec_min * minutes, self.pa_deg)


# ------------------------------------------------------------------------- geometry


def _offset(
    ra_deg: float, dec_deg: float, distance_arcsec: NDArray[np.float64], pa_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return the point a distance (arcsec) along the great circle leaving at a PA (deg)."""
    ra0, dec0 = math.radians(ra_deg), math.radians(dec_deg)
    d = distance_arcsec / _ARCSEC_PER_RAD
    pa = math.radians(pa_deg)
    sin_dec = math.sin(dec0) * np.cos(d) + math.cos(dec0) * np.sin(d) * math.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1.0, 1.0))
    dra = np.arctan2(
        math.sin(pa) * np.sin(d) * math.cos(dec0), np.cos(d) - math.sin(dec0) * sin_dec
    )
    return np.degrees(ra0 + dra) % 360.0, np.degrees(dec)


def _tangent_point(
    ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64]
) -> tuple[float, float]:
    """Return the direction of the mean unit vector of positions (deg): a projection centre."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    v = np.array(
        [
            np.sum(np.cos(dec) * np.cos(ra)),
            np.sum(np.cos(dec) * np.sin(ra)),
            np.sum(np.sin(dec)),
        ]
    )
    return (
        math.degrees(math.atan2(v[1], v[0])) % 360.0,
        math.degrees(math.atan2(v[2], math.hypot(v[0], v[1]))),
    )


def _project(
    ra_deg: NDArray[np.float64], dec_deg: NDArray[np.float64], ra0_deg: float, dec0_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gnomonic projection about a centre: standard coordinates (arcsec), xi east, eta north."""
    dra = np.radians(ra_deg - ra0_deg)
    dec, dec0 = np.radians(dec_deg), math.radians(dec0_deg)
    cos_c = math.sin(dec0) * np.sin(dec) + math.cos(dec0) * np.cos(dec) * np.cos(dra)
    xi = np.cos(dec) * np.sin(dra) / cos_c
    eta = (math.cos(dec0) * np.sin(dec) - math.sin(dec0) * np.cos(dec) * np.cos(dra)) / cos_c
    return xi * _ARCSEC_PER_RAD, eta * _ARCSEC_PER_RAD


def _deproject(
    xi_arcsec: float, eta_arcsec: float, ra0_deg: float, dec0_deg: float
) -> tuple[float, float]:
    """Inverse of `_project` for one point: (RA in [0, 360), Dec) in deg."""
    xi, eta = xi_arcsec / _ARCSEC_PER_RAD, eta_arcsec / _ARCSEC_PER_RAD
    dec0 = math.radians(dec0_deg)
    den = math.cos(dec0) - eta * math.sin(dec0)
    ra = ra0_deg + math.degrees(math.atan2(xi, den))
    dec = math.degrees(math.atan2(math.sin(dec0) + eta * math.cos(dec0), math.hypot(xi, den)))
    return ra % 360.0, dec


# ------------------------------------------------------------------------------ fits


@dataclass(frozen=True)
class _Fit:
    """Straight-line fits of many candidates at once (private to linking)."""

    tm: NDArray[np.float64]  # weighted mean time of each candidate's points (minutes)
    x0: NDArray[np.float64]  # position at tm (arcsec)
    y0: NDArray[np.float64]
    vx: NDArray[np.float64]  # velocity (arcsec per minute), east
    vy: NDArray[np.float64]  # north
    rms: NDArray[np.float64]  # rms distance of the used points from the line (arcsec)
    score: NDArray[np.float64]  # rms of the distances in units of each point's tolerance
    res: NDArray[np.float64]  # each point's distance over its tolerance


def _fit_lines(
    t: NDArray[np.float64],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    tol: NDArray[np.float64],
    used: NDArray[np.bool_],
) -> _Fit:
    """Fit ``x, y = x0, y0 + v (t - tm)`` to each row's used points, weighted by 1/tol^2.

    Rows are candidate tracks, columns frames; `used` marks the points a row uses (>= 2 of
    them at distinct times), `tol` their tolerances (arcsec).
    """
    w = np.where(used, 1.0 / tol**2, 0.0)
    sw = w.sum(axis=1)
    tm = (w * t).sum(axis=1) / sw
    dt_ = np.where(used, t - tm[:, None], 0.0)
    stt = (w * dt_**2).sum(axis=1)
    x0 = (w * x).sum(axis=1) / sw
    y0 = (w * y).sum(axis=1) / sw
    vx = (w * dt_ * x).sum(axis=1) / stt
    vy = (w * dt_ * y).sum(axis=1) / stt
    dist = np.hypot(x - x0[:, None] - vx[:, None] * dt_, y - y0[:, None] - vy[:, None] * dt_)
    n = used.sum(axis=1)
    res = np.where(used, dist / tol, 0.0)
    rms = np.sqrt(np.where(used, dist**2, 0.0).sum(axis=1) / n)
    score = np.sqrt((res**2).sum(axis=1) / n)
    return _Fit(tm, x0, y0, vx, vy, rms, score, res)


def _trail_consistent(
    elongation: NDArray[np.float64],
    theta_deg: NDArray[np.float64],
    pa_deg: NDArray[np.float64],
    *,
    max_angle_deg: float,
) -> NDArray[np.bool_]:
    """Whether trailed images lie along the motion; untrailed or unknown shapes always do."""
    diff = np.abs((theta_deg - pa_deg + 90.0) % 180.0 - 90.0)
    trailed = np.isfinite(elongation) & np.isfinite(theta_deg)
    trailed &= elongation >= _TRAIL_MIN_ELONGATION
    return np.asarray(~trailed | (diff <= max_angle_deg), dtype=np.bool_)


# --------------------------------------------------------------------------- linking


@dataclass(frozen=True)
class _Frames:
    """Detections grouped by frame in a tangent plane of the field (private to linking)."""

    times_min: NDArray[np.float64]  # frame times, minutes from the first
    members: list[NDArray[np.intp]]  # detection rows of each frame, frames in time order
    t_min: NDArray[np.float64]  # per detection: minutes from the first frame
    x: NDArray[np.float64]  # arcsec east
    y: NDArray[np.float64]  # arcsec north
    tol: NDArray[np.float64]  # tolerance of its distance from a fitted motion (arcsec)
    elongation: NDArray[np.float64]
    theta_deg: NDArray[np.float64]


def _optional_field(detections: NDArray[np.void], name: str) -> NDArray[np.float64]:
    """Return a float field of the detections, NaN where the array does not have it."""
    if name in (detections.dtype.names or ()):
        return np.asarray(detections[name], dtype=np.float64)
    return np.full(detections.shape[0], np.nan)


def _frames(detections: NDArray[np.void], *, max_residual: float) -> _Frames:
    """Group usable detections by exposure and project them about the field's centre."""
    ra = np.asarray(detections["ra_deg"], dtype=np.float64)
    dec = np.asarray(detections["dec_deg"], dtype=np.float64)
    mjd = np.asarray(detections["mjd"], dtype=np.float64)
    pos_err = _optional_field(detections, "pos_err_arcsec")
    # The rms bound covers astrometric errors common to all detections; a detection's own
    # error (a faint or trailed image) adds to it at twice its size: sigma per axis is
    # sqrt(2) sigma of distance, and at 2 sigma a track of such points fails the rms bound
    # about 0.3 % of the time (its chi^2 with 2n - 4 degrees of freedom over 4n above 1).
    tol = np.hypot(max_residual, 2.0 * np.where(np.isfinite(pos_err), pos_err, 0.0))
    good = np.isfinite(ra) & np.isfinite(dec) & np.isfinite(mjd)
    x = np.full(ra.size, np.nan)
    y = np.full(ra.size, np.nan)
    t = np.full(ra.size, np.nan)
    elongation = _optional_field(detections, "elongation")
    theta = _optional_field(detections, "theta_deg")
    if not good.any():
        return _Frames(np.empty(0), [], t, x, y, tol, elongation, theta)
    ra0, dec0 = _tangent_point(ra[good], dec[good])
    x[good], y[good] = _project(ra[good], dec[good], ra0, dec0)
    exposure = np.asarray(detections["exposure_id"])
    ids = np.unique(exposure[good])
    rows = [np.flatnonzero(good & (exposure == e)) for e in ids]
    # A frame's time is its detections' median: they share one exposure's middle.
    frame_mjd = np.array([np.median(mjd[r]) for r in rows])
    order = np.argsort(frame_mjd, kind="stable")
    mjd0 = float(frame_mjd[order[0]])
    t[good] = (mjd[good] - mjd0) * _MIN_PER_DAY
    return _Frames(
        (frame_mjd[order] - mjd0) * _MIN_PER_DAY, [rows[i] for i in order], t, x, y, tol,
        elongation, theta,
    )  # fmt: skip


def _static_mask(
    frames: _Frames, *, radius_arcsec: float, min_rate: float, min_frames: int
) -> NDArray[np.bool_]:
    """Mark detections that recur at one position on at least `min_frames` frames.

    Two frames a time ``dt`` apart compare within ``min(radius, min_rate dt / 2)``: an object
    moving at the slowest linked rate has moved twice that far, so it never matches itself.
    """
    counts = np.zeros(frames.x.size, dtype=np.intp)
    points = [np.column_stack([frames.x[m], frames.y[m]]) for m in frames.members]
    trees = [cKDTree(p) for p in points]
    for a in range(len(points)):
        for b in range(a + 1, len(points)):
            delta = abs(frames.times_min[b] - frames.times_min[a])
            radius = min(radius_arcsec, 0.5 * min_rate * delta)
            if radius <= 0.0 or points[a].size == 0 or points[b].size == 0:
                continue
            pairs = trees[a].query_ball_tree(trees[b], r=radius)
            hit_a = np.array([len(p) > 0 for p in pairs], dtype=bool)
            hit_b = np.zeros(points[b].shape[0], dtype=bool)
            for p in pairs:
                hit_b[p] = True
            counts[frames.members[a][hit_a]] += 1
            counts[frames.members[b][hit_b]] += 1
    return np.asarray(counts >= min_frames - 1, dtype=np.bool_)


def _seeds(
    frames: _Frames, usable: list[NDArray[np.intp]], trees: list[cKDTree], *,
    min_rate: float, max_rate: float,
) -> list[tuple[int, int, NDArray[np.intp], NDArray[np.intp]]]:  # fmt: skip
    """Pairs of detections on two frames whose separation fits the rate band.

    Returns ``(frame a, frame b, rows on a, rows on b)`` for every pair of frames.
    """
    out = []
    k = len(usable)
    for a in range(k):
        for b in range(a + 1, k):
            delta = frames.times_min[b] - frames.times_min[a]
            if delta <= 0.0 or usable[a].size == 0 or usable[b].size == 0:
                continue
            # Position errors blur the band's edges by the pair's tolerances.
            slack = _GATE * float(max(frames.tol[usable[a]].max(), frames.tol[usable[b]].max()))
            sparse = trees[a].sparse_distance_matrix(
                trees[b], max_rate * delta + slack, output_type="ndarray"
            )
            rows_a, rows_b = usable[a][sparse["i"]], usable[b][sparse["j"]]
            edge = _GATE * np.maximum(frames.tol[rows_a], frames.tol[rows_b])
            keep = (sparse["v"] >= min_rate * delta - edge) & (
                sparse["v"] <= max_rate * delta + edge
            )
            out.append((a, b, rows_a[keep], rows_b[keep]))
    return out


def _link_pair(
    frames: _Frames,
    usable: list[NDArray[np.intp]],
    trees: list[cKDTree],
    a: int,
    b: int,
    rows_a: NDArray[np.intp],
    rows_b: NDArray[np.intp],
) -> NDArray[np.intp]:
    """Extend seeds of frames a and b by the nearest detection to the prediction elsewhere.

    Returns a ``(n_seeds, n_frames)`` array of detection rows, -1 where a frame has none.
    """
    k = len(usable)
    ta, tb = frames.times_min[a], frames.times_min[b]
    t_a, t_b = frames.t_min[rows_a], frames.t_min[rows_b]
    vx = (frames.x[rows_b] - frames.x[rows_a]) / (t_b - t_a)
    vy = (frames.y[rows_b] - frames.y[rows_a]) / (t_b - t_a)
    seed_tol = _GATE * np.maximum(frames.tol[rows_a], frames.tol[rows_b])
    members = np.full((rows_a.size, k), -1, dtype=np.intp)
    members[:, a], members[:, b] = rows_a, rows_b
    for c in range(k):
        if c in (a, b) or usable[c].size == 0:
            continue
        tc = frames.times_min[c]
        # The prediction's error grows with the sum of the interpolation weights' sizes:
        # 1 between the seeds, 1 + 2 (tc - tb) / (tb - ta) beyond them.
        gate = seed_tol * max(1.0, (abs(tc - ta) + abs(tc - tb)) / (tb - ta))
        px = frames.x[rows_a] + vx * (tc - t_a)
        py = frames.y[rows_a] + vy * (tc - t_a)
        dist, idx = trees[c].query(
            np.column_stack([px, py]), k=1, distance_upper_bound=float(gate.max())
        )
        found = dist <= gate
        members[found, c] = usable[c][idx[found]]
    return members


def _refine(
    frames: _Frames,
    members: NDArray[np.intp],
    *,
    min_detections: int,
    max_trail_angle_deg: float,
) -> tuple[NDArray[np.intp], _Fit | None, NDArray[np.bool_]]:
    """Fit each candidate, drop trails across the motion and the worst points while too loose.

    Returns the members left (-1 for dropped points), the final fit of the candidates that
    kept `min_detections` points (None if none did) and which candidates those are.
    """
    used = members >= 0
    safe = np.where(used, members, 0)
    t, x, y, tol = frames.t_min[safe], frames.x[safe], frames.y[safe], frames.tol[safe]
    live = used.sum(axis=1) >= min_detections
    if live.any():
        fit = _fit_lines(t[live], x[live], y[live], tol[live], used[live])
        pa = np.degrees(np.arctan2(fit.vx, fit.vy))[:, None]
        used[live] &= _trail_consistent(
            frames.elongation[safe[live]], frames.theta_deg[safe[live]], pa,
            max_angle_deg=max_trail_angle_deg,
        )  # fmt: skip
    # Drop the worst point while the score is above 1 and points are to spare.
    for _ in range(members.shape[1]):
        live = used.sum(axis=1) >= min_detections
        if not live.any():
            return np.where(used, members, -1), None, live
        fit = _fit_lines(t[live], x[live], y[live], tol[live], used[live])
        loose = (fit.score > 1.0) & (used[live].sum(axis=1) > min_detections)
        if not loose.any():
            break
        rows = np.flatnonzero(live)[loose]
        used[rows, np.argmax(fit.res[loose], axis=1)] = False
    return np.where(used, members, -1), fit, live


def _select(members: NDArray[np.intp], score: NDArray[np.float64]) -> list[NDArray[np.intp]]:
    """Accept candidates greedily, most detections then smallest score, each detection once."""
    n = (members >= 0).sum(axis=1)
    # Many seeds find the same track: keep one row per set of detections.
    _, first = np.unique(np.sort(members, axis=1), axis=0, return_index=True)
    order = first[np.lexsort((score[first], -n[first]))]
    taken: set[int] = set()
    out = []
    for row in order:
        rows = members[row][members[row] >= 0]
        if taken.isdisjoint(rows.tolist()):
            taken.update(rows.tolist())
            out.append(rows)
    return out


def _weighted_mag(mag: NDArray[np.float64], err: NDArray[np.float64]) -> tuple[float, float]:
    """Weighted mean magnitude and its error (mag); NaN when no magnitude is finite."""
    ok = np.isfinite(mag)
    if not ok.any():
        return math.nan, math.nan
    if np.all(np.isfinite(err[ok]) & (err[ok] > 0.0)):
        w = 1.0 / err[ok] ** 2
        return float(np.sum(w * mag[ok]) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w)))
    m = mag[ok]
    spread = float(np.std(m, ddof=1) / math.sqrt(m.size)) if m.size > 1 else math.nan
    return float(np.mean(m)), spread


def _track(
    detections: NDArray[np.void], tol: NDArray[np.float64], rows: NDArray[np.intp], chance: float
) -> Track:
    """Refit a track's detections in a tangent plane about their own mean position."""
    mjd = np.asarray(detections["mjd"][rows], dtype=np.float64)
    order = np.argsort(mjd, kind="stable")
    rows, mjd = rows[order], mjd[order]
    ra = np.asarray(detections["ra_deg"][rows], dtype=np.float64)
    dec = np.asarray(detections["dec_deg"][rows], dtype=np.float64)
    ra0, dec0 = _tangent_point(ra, dec)
    x, y = _project(ra, dec, ra0, dec0)
    t = (mjd - mjd[0]) * _MIN_PER_DAY
    fit = _fit_lines(t[None], x[None], y[None], tol[rows][None], np.ones((1, rows.size), bool))
    ref_ra, ref_dec = _deproject(float(fit.x0[0]), float(fit.y0[0]), ra0, dec0)
    mag, mag_err = _weighted_mag(
        np.asarray(detections["mag"][rows], dtype=np.float64),
        np.asarray(detections["mag_err"][rows], dtype=np.float64),
    )
    vx, vy = float(fit.vx[0]), float(fit.vy[0])
    return Track(
        indices=tuple(int(r) for r in rows),
        epoch_mjd=float(mjd[0] + fit.tm[0] / _MIN_PER_DAY),
        ra_deg=ref_ra,
        dec_deg=ref_dec,
        rate_arcsec_min=math.hypot(vx, vy),
        pa_deg=math.degrees(math.atan2(vx, vy)) % 360.0,
        mag=mag,
        mag_err=mag_err,
        rms_arcsec=float(fit.rms[0]),
        chance_tracks=chance,
    )


def _field_area(frames: _Frames, usable: list[NDArray[np.intp]]) -> float:
    """Area the candidates cover (arcsec^2): their convex hull, or bounding box if flat."""
    rows = np.concatenate(usable)
    points = np.column_stack([frames.x[rows], frames.y[rows]])
    try:
        return float(ConvexHull(points).volume)
    except (QhullError, ValueError):
        span = np.ptp(points, axis=0) if rows.size else np.zeros(2)
        return float(max(span[0] * span[1], 1.0))


def _chance_tracks(
    frames: _Frames,
    usable: list[NDArray[np.intp]],
    *,
    min_rate: float,
    max_rate: float,
    area: float | None = None,
) -> NDArray[np.float64]:
    """Return the expected number of chance tracks of n detections in the field, by n.

    A chance track of n detections on frames a < ... < b is a pair on a and b within the rate
    band (``N_a N_b pi (v_max^2 - v_min^2) dt^2 / area``) and, on n - 2 of the frames between
    them, a candidate within the gate of the line (probability ``N_c pi (2 tol_c)^2 / area``
    each): their product summed over the frame pairs, the sums over subsets of frames between
    done as the coefficients of ``prod(1 + p_c x)``. Against simulated fields it comes out
    2-5 times the number of chance tracks found: an upper estimate.
    """
    k = len(usable)
    area = _field_area(frames, usable) if area is None else area
    n = np.array([u.size for u in usable], dtype=np.float64)
    tol = np.array([np.median(frames.tol[u]) if u.size else 0.0 for u in usable])
    p = np.minimum(1.0, n * math.pi * (_GATE * tol) ** 2 / area)
    expected = np.zeros(k + 1)
    for a in range(k):
        for b in range(a + 1, k):
            delta = frames.times_min[b] - frames.times_min[a]
            band = math.pi * (max_rate**2 - min_rate**2) * delta**2 / area
            pairs = n[a] * n[b] * min(1.0, band)
            poly = np.array([1.0])
            for c in range(a + 1, b):
                poly = np.convolve(poly, [1.0, p[c]])
            expected[2 : 2 + poly.size] += pairs * poly
    return expected


def link_tracks(
    detections: NDArray[np.void],
    *,
    min_rate_arcsec_min: float = 0.5,
    max_rate_arcsec_min: float = 90.0,
    max_residual_arcsec: float = 0.5,
    min_detections: int = 3,
    max_chance_tracks: float = 0.1,
    static_radius_arcsec: float = 1.5,
    static_min_frames: int = 3,
    max_trail_angle_deg: float = 20.0,
    field_area_arcsec2: float | None = None,
) -> list[Track]:
    """Link detections of consecutive frames of one field into moving-object tracks.

    Parameters
    ----------
    detections : numpy.ndarray
        Candidates of a few to tens of frames of one field, a structured array with the fields
        of `DETECTION_DTYPE` (``pos_err_arcsec``, ``elongation`` and ``theta_deg``
        optional). Rows with a non-finite position or time are ignored.
    min_rate_arcsec_min, max_rate_arcsec_min : float, optional
        Band of angular rates linked (arcsec per minute); the defaults reach a little past
        1-60 so that the fitted rate of an object at either end is not lost to noise. The
        slowest must move clearly farther than the position errors over the frames' time
        span, or a static source could pass for it.
    max_residual_arcsec : float, optional
        Largest rms distance of a track's detections from its fitted motion (arcsec) from
        errors common to all detections (astrometric solution, centroiding of a well-exposed
        point source). Twice a detection's ``pos_err_arcsec`` adds to it in quadrature, to
        make that detection's tolerance; the rms of the distances, each in units of its
        tolerance, must be at most 1. A detection joins a candidate within twice its
        tolerance (more when extrapolated).
    min_detections : int, optional
        Fewest detections, on as many frames, of a track (>= 3: two points always lie
        on a line).
    max_chance_tracks : float, optional
        Tracks of n detections are kept only if chance alignments of the field's candidates
        are expected to make at most this many of them (`Track.chance_tracks`). Among
        hundreds of candidates per frame three aligned detections happen by chance tens of
        times, four hardly ever: a dense field needs more detections than a sparse one.
        ``math.inf`` keeps every track of `min_detections`.
    static_radius_arcsec : float, optional
        Detections within this distance (arcsec) of one another on different frames are one
        static source, never part of a track; two frames ``dt`` apart compare within at most
        half the slowest linked motion, ``min_rate * dt / 2``.
    static_min_frames : int, optional
        A position recurring on this many frames is static.
    max_trail_angle_deg : float, optional
        A trailed detection (``elongation`` >= 1.5) whose axis is more than this (deg) off the
        track's direction is dropped from it.
    field_area_arcsec2 : float or None, optional
        The area the frames cover (arcsec^2), over which chance alignments are counted; by
        default the candidates' convex hull, which is right only when bogus candidates
        fill the frames (a few candidates left by a real/bogus cut cover little of it).

    Returns
    -------
    list of Track
        The tracks, most detections and best fit first; each detection is in at most one.

    Raises
    ------
    ValueError
        If the array lacks a required field or a parameter is out of range.

    Notes
    -----
    The cost grows as the square of the number of frames times the number of seed pairs,
    which grows as the square of the candidates per frame and of the fastest rate: about
    0.1-0.2 s for 4 frames of 300 candidates at up to 90 arcsec per minute.
    """
    missing = {"exposure_id", "mjd", "ra_deg", "dec_deg", "mag", "mag_err"} - set(
        detections.dtype.names or ()
    )
    if missing:
        raise ValueError(f"detections lack the fields {sorted(missing)}")
    if not 0.0 < min_rate_arcsec_min < max_rate_arcsec_min:
        raise ValueError("need 0 < min_rate_arcsec_min < max_rate_arcsec_min")
    if max_residual_arcsec <= 0.0 or static_radius_arcsec < 0.0:
        raise ValueError("max_residual_arcsec must be positive, static_radius_arcsec >= 0")
    if min_detections < 3 or static_min_frames < 2 or not max_chance_tracks >= 0.0:
        raise ValueError("need min_detections >= 3, static_min_frames >= 2, max_chance_tracks >= 0")
    detections = np.asarray(detections).ravel()
    frames = _frames(detections, max_residual=max_residual_arcsec)
    if len(frames.members) < min_detections:
        return []
    static = _static_mask(
        frames, radius_arcsec=static_radius_arcsec, min_rate=min_rate_arcsec_min,
        min_frames=static_min_frames,
    )  # fmt: skip
    usable = [m[~static[m]] for m in frames.members]
    chance = _chance_tracks(
        frames, usable, min_rate=min_rate_arcsec_min, max_rate=max_rate_arcsec_min,
        area=field_area_arcsec2,
    )  # fmt: skip
    # The fewest detections a track needs in this field to be unlikely by chance.
    enough = [n for n in range(min_detections, chance.size) if chance[n] <= max_chance_tracks]
    if not enough:
        return []
    min_detections = enough[0]
    trees = [cKDTree(np.column_stack([frames.x[u], frames.y[u]])) for u in usable]
    candidates, scores = [], []
    seeds = _seeds(
        frames, usable, trees, min_rate=min_rate_arcsec_min, max_rate=max_rate_arcsec_min
    )
    for a, b, rows_a, rows_b in seeds:
        if rows_a.size == 0:
            continue
        members = _link_pair(frames, usable, trees, a, b, rows_a, rows_b)
        members, fit, live = _refine(
            frames, members, min_detections=min_detections,
            max_trail_angle_deg=max_trail_angle_deg,
        )  # fmt: skip
        if fit is None:
            continue
        rate = np.hypot(fit.vx, fit.vy)
        ok = (fit.score <= 1.0) & (rate >= min_rate_arcsec_min) & (rate <= max_rate_arcsec_min)
        candidates.append(members[live][ok])
        scores.append(fit.score[ok])
    if sum(c.shape[0] for c in candidates) == 0:
        return []
    chosen = _select(np.concatenate(candidates), np.concatenate(scores))
    return [_track(detections, frames.tol, rows, float(chance[rows.size])) for rows in chosen]


# ----------------------------------------------------------------------- MPC report


def _mpc_date(mjd: float) -> str:
    """``YYYY MM DD.ddddd`` (UTC), rounded to 1e-5 day with the carry into the date."""
    units = round(mjd * 100_000)
    day, frac = divmod(units, 100_000)
    date = dt.date(1858, 11, 17) + dt.timedelta(days=day)
    return f"{date.year:04d} {date.month:02d} {date.day:02d}.{frac:05d}"


def _mpc_ra(ra_deg: float) -> str:
    """``HH MM SS.ss``, rounded to 0.01 s of time with the carry."""
    units = round((ra_deg % 360.0) / 15.0 * 360_000) % (24 * 360_000)
    h, rest = divmod(units, 360_000)
    m, rest = divmod(rest, 6_000)
    s, cs = divmod(rest, 100)
    return f"{h:02d} {m:02d} {s:02d}.{cs:02d}"


def _mpc_dec(dec_deg: float) -> str:
    """``sDD MM SS.s``, rounded to 0.1 arcsec with the carry."""
    units = round(abs(dec_deg) * 36_000)
    sign = "-" if dec_deg < 0.0 and units > 0 else "+"
    d, rest = divmod(units, 36_000)
    m, rest = divmod(rest, 600)
    s, ds = divmod(rest, 10)
    return f"{sign}{d:02d} {m:02d} {s:02d}.{ds:d}"


def _mpc_mag(mag: float) -> str:
    """Columns 66-70: the magnitude to 0.1 mag, point in column 68; blank when unknown."""
    if not math.isfinite(mag) or not -9.95 < mag < 99.95:
        return " " * 5
    return f"{mag:4.1f} "


def _designation(prefix: str, number: int) -> str:
    width = max(1, 6 - len(prefix))
    name = f"{prefix}{number:0{width}d}"
    if len(name) > 7:
        raise ValueError(f"temporary designation {name!r} is longer than 7 characters")
    return name


def mpc_report(
    tracks: Sequence[Track],
    detections: NDArray[np.void],
    *,
    observatory_code: str,
    designation_prefix: str,
    band: str,
    first_number: int = 1,
    note1: str = " ",
    note2: str = "C",
    discovery: bool = False,
    header: Mapping[str, str] | None = None,
) -> str:
    """Write tracks as observations in the MPC's 80-column format for optical astrometry.

    One line per detection of each track, in time order, with the detection's own measured
    position, time and magnitude. Columns (1-based), as the Minor Planet Center's "Format for
    optical astrometric observations" lays them out: 1-5 blank (no number), 6-12 the
    temporary designation, 13 the discovery asterisk, 14 note 1, 15 note 2, 16-32 the date
    ``YYYY MM DD.ddddd`` (UTC), 33-44 RA ``HH MM SS.ss``, 45-56 Dec ``sDD MM SS.s``, 57-65
    blank, 66-70 the magnitude (0.1 mag), 71 the band, 72-77 blank, 78-80 the observatory code.

    Parameters
    ----------
    tracks : sequence of Track
        The tracks, as `link_tracks` returns them for `detections`.
    detections : numpy.ndarray
        The detections the tracks index (`DETECTION_DTYPE` fields).
    observatory_code : str
        The MPC observatory code, three characters.
    designation_prefix : str
        Letters starting every temporary designation; track ``i`` is named the prefix
        followed by ``first_number + i``, zero padded to 6 characters (7 at most).
    band : str
        Band of the magnitudes, one of `MPC_BANDS`.
    first_number : int, optional
        Number of the first track's designation (>= 0), so that a night's reports do not
        reuse designations.
    note1 : str, optional
        Column 14, a publishable note or program code; blank by default.
    note2 : str, optional
        Column 15, how the observation was made: ``C`` CCD (default), ``B`` CMOS.
    discovery : bool, optional
        Put the discovery asterisk on the first observation of each track (new objects only).
    header : mapping of str to str, optional
        Header lines after ``COD <observatory_code>``, keyword (three capitals: ``OBS``,
        ``MEA``, ``TEL``, ``NET``, ``ACK``...) to text; no header lines when None.

    Returns
    -------
    str
        The report, lines ending in a newline.

    Raises
    ------
    ValueError
        If a code, designation, band or note does not fit its columns.
    """
    if len(observatory_code) != 3 or not observatory_code.isalnum():
        raise ValueError(f"observatory_code must be 3 letters or digits, got {observatory_code!r}")
    if not designation_prefix.isalnum() or not designation_prefix[:1].isalpha():
        raise ValueError(f"designation_prefix must be alphanumeric from a letter, got "
                         f"{designation_prefix!r}")  # fmt: skip
    if band not in MPC_BANDS:
        raise ValueError(f"band {band!r} is not one the MPC accepts: {''.join(sorted(MPC_BANDS))}")
    if len(note1) != 1 or len(note2) != 1 or first_number < 0:
        raise ValueError("note1 and note2 must be single characters, first_number >= 0")
    lines = []
    if header is not None:
        lines.append(f"COD {observatory_code}")
        for key, text in header.items():
            if len(key) != 3 or not key.isalpha() or not key.isupper() or key == "COD":
                raise ValueError(f"header keyword {key!r} is not three capitals (or is COD)")
            lines.append(f"{key} {text}")
    for number, track in enumerate(tracks, start=first_number):
        name = _designation(designation_prefix, number)
        rows = sorted(track.indices, key=lambda r: float(detections["mjd"][r]))
        for k, row in enumerate(rows):
            det = detections[row]
            line = (
                " " * 5
                + name.ljust(7)
                + ("*" if discovery and k == 0 else " ")
                + note1
                + note2
                + _mpc_date(float(det["mjd"])).ljust(17)
                + _mpc_ra(float(det["ra_deg"])).ljust(12)
                + _mpc_dec(float(det["dec_deg"])).ljust(12)
                + " " * 9
                + _mpc_mag(float(det["mag"]))
                + band
                + " " * 6
                + observatory_code
            )
            lines.append(line)
    return "".join(f"{line}\n" for line in lines)
