"""Differential photometry against an automatically chosen, reweighted comparison ensemble.

The ensemble is an artificial comparison star in the manner of Broeg, Fernandez & Neuhaeuser
(2005, AN 326, 134): every frame's offset is the weighted mean of the comparison stars'
magnitudes minus their reference magnitudes; each comparison star's weight is the inverse of
its own measured variance (photon noise and any excess scatter, measured leave-one-out against
the other comparison stars), and stars that turn out variable are dropped. Iterating a few
times converges. Everything here is pure numpy over ``(frames, stars)`` matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["EnsembleResult", "choose_comparisons", "differential_photometry"]


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    """The ensemble solution and every star's differential light curve.

    Parameters
    ----------
    mag, mag_err : numpy.ndarray
        ``(frames, stars)`` differential magnitudes on the reference scale and their errors
        (mag); NaN where a star was not measured or a frame had no comparison star.
    frame_offset, frame_offset_err : numpy.ndarray
        Per frame, the ensemble offset (instrumental minus reference, mag) and its error.
    weights : numpy.ndarray
        Per star, the comparison weight (1 / mag^2); 0 for stars not in the ensemble.
    ref_mag : numpy.ndarray
        Per star, the reference magnitude after the iterations (mag).
    comp_scatter : numpy.ndarray
        Per star, the excess scatter found for comparison stars (mag); NaN for others.
    iterations : int
        Iterations run.
    """

    mag: NDArray[np.float64]
    mag_err: NDArray[np.float64]
    frame_offset: NDArray[np.float64]
    frame_offset_err: NDArray[np.float64]
    weights: NDArray[np.float64]
    ref_mag: NDArray[np.float64]
    comp_scatter: NDArray[np.float64]
    iterations: int

    @property
    def comparisons(self) -> NDArray[np.intp]:
        """Indices of the stars in the final ensemble."""
        return np.flatnonzero(self.weights > 0)


def choose_comparisons(
    inst_mag: NDArray[np.float64],
    inst_err: NDArray[np.float64],
    usable: NDArray[np.bool_],
    *,
    exclude: NDArray[np.intp] | None = None,
    colour: NDArray[np.float64] | None = None,
    target_colour: float | None = None,
    max_colour_diff: float = 0.5,
    min_coverage: float = 0.8,
    max_err_mag: float = 0.05,
    max_count: int = 30,
) -> NDArray[np.intp]:
    """Pick comparison-star candidates: often measured, unflagged, bright and not the target.

    Parameters
    ----------
    inst_mag, inst_err : numpy.ndarray
        ``(frames, stars)`` instrumental magnitudes and errors (mag), NaN when not measured.
    usable : numpy.ndarray of bool
        ``(frames, stars)``: the point is unflagged (not saturated, not on a bad frame).
    exclude : numpy.ndarray of int, optional
        Stars never to use (the monitored targets).
    colour : numpy.ndarray, optional
        Per star colour index (mag), NaN when unknown.
    target_colour : float, optional
        The target's colour; with `colour`, stars of similar colour are preferred.
    max_colour_diff : float, optional
        Colour difference (mag) within which a star counts as similar.
    min_coverage : float, optional
        Fewest fraction of frames in which the star must be usable.
    max_err_mag : float, optional
        Largest median error (mag) of a candidate.
    max_count : int, optional
        Most candidates returned, brightest (smallest median error) first.

    Returns
    -------
    numpy.ndarray of intp
        Star indices of the candidates.
    """
    n_frames, n_stars = inst_mag.shape
    good = usable & np.isfinite(inst_mag) & np.isfinite(inst_err) & (inst_err > 0)
    coverage = good.sum(axis=0) / max(n_frames, 1)
    median_err = np.full(n_stars, np.inf)
    seen = good.any(axis=0)
    median_err[seen] = np.nanmedian(np.where(good[:, seen], inst_err[:, seen], np.nan), axis=0)
    ok = (coverage >= min_coverage) & (median_err <= max_err_mag)
    if exclude is not None and len(exclude):
        ok[np.asarray(exclude, dtype=np.intp)] = False
    rank = np.where(ok, median_err, np.inf)
    if colour is not None and target_colour is not None and np.isfinite(target_colour):
        similar = np.abs(colour - target_colour) <= max_colour_diff
        # Similar colours rank first when there are enough of them.
        if np.count_nonzero(ok & similar) >= 5:
            rank = np.where(similar, rank, np.inf)
    order = np.argsort(rank, kind="stable")
    return order[np.isfinite(rank[order])][:max_count]


def differential_photometry(
    inst_mag: NDArray[np.float64],
    inst_err: NDArray[np.float64],
    usable: NDArray[np.bool_],
    comparisons: NDArray[np.intp],
    *,
    ref_mag: NDArray[np.float64] | None = None,
    iterations: int = 6,
    variable_chi2: float = 5.0,
    min_comparisons: int = 2,
) -> EnsembleResult:
    """Differential magnitudes of every star against an iteratively reweighted ensemble.

    Parameters
    ----------
    inst_mag, inst_err : numpy.ndarray
        ``(frames, stars)`` instrumental magnitudes and errors (mag), NaN when not measured.
    usable : numpy.ndarray of bool
        ``(frames, stars)``: points that may enter the ensemble (unflagged, good frame).
    comparisons : numpy.ndarray of int
        Candidate comparison stars (see `choose_comparisons`).
    ref_mag : numpy.ndarray, optional
        Per star reference magnitude (e.g. the median calibrated magnitude) that sets the
        scale of the output; NaN or None falls back to the star's mean instrumental magnitude.
    iterations : int, optional
        Reweighting iterations.
    variable_chi2 : float, optional
        A comparison star whose reduced chi-square against its own mean exceeds this, after
        its excess scatter is allowed for, is considered variable and dropped.
    min_comparisons : int, optional
        Frames with fewer usable comparison stars get no offset (their points become NaN).

    Returns
    -------
    EnsembleResult
        The solution. Errors of the differential magnitudes combine the point's own error
        and the ensemble offset's error.
    """
    m = np.asarray(inst_mag, dtype=np.float64)
    e = np.asarray(inst_err, dtype=np.float64)
    n_frames, n_stars = m.shape
    comps = np.asarray(comparisons, dtype=np.intp)
    mc, ec = m[:, comps], e[:, comps]
    good = usable[:, comps] & np.isfinite(mc) & np.isfinite(ec) & (ec > 0)
    with np.errstate(all="ignore"):
        mean_inst = np.nanmean(np.where(good, mc, np.nan), axis=0)
    ref_all = np.full(n_stars, np.nan) if ref_mag is None else np.asarray(ref_mag, float).copy()
    ref_c = ref_all[comps] if ref_mag is not None else np.full(comps.size, np.nan)
    # Without a reference the ensemble is anchored to its own mean (offsets near 0).
    anchor = np.where(np.isfinite(ref_c), ref_c, mean_inst)
    scatter = np.zeros(comps.size)
    active = np.isfinite(anchor) & (good.sum(axis=0) >= 2)
    offset = np.full(n_frames, np.nan)
    offset_err = np.full(n_frames, np.nan)
    done = 0
    for done in range(1, iterations + 1):  # noqa: B007  (the count is reported)
        var = ec**2 + scatter[None, :] ** 2
        w = np.where(good & active[None, :], 1.0 / var, 0.0)
        resid = np.where(w > 0, mc - anchor[None, :], 0.0)
        wsum = w.sum(axis=1)
        ncomp = (w > 0).sum(axis=1)
        ok_frame = ncomp >= min_comparisons
        with np.errstate(all="ignore"):
            offset = np.where(ok_frame, (w * resid).sum(axis=1) / wsum, np.nan)
            offset_err = np.where(ok_frame, 1.0 / np.sqrt(wsum), np.nan)
            # Leave-one-out: each comparison star against the ensemble of the others.
            loo_w = wsum[:, None] - w
            loo = ((w * resid).sum(axis=1)[:, None] - w * resid) / loo_w
            r = mc - anchor[None, :] - loo
            r_var = ec**2 + 1.0 / loo_w
        valid = good & active[None, :] & ok_frame[:, None] & (loo_w > 0) & np.isfinite(r)
        for j in range(comps.size):
            v = valid[:, j]
            if np.count_nonzero(v) < 3:
                active[j] = False
                continue
            rj, varj = r[v, j], r_var[v, j]
            wj = 1.0 / varj
            bias = float(np.sum(wj * rj) / np.sum(wj))
            anchor[j] += bias  # the reference magnitude was off by this much
            dev = rj - bias
            excess = float(np.mean(dev**2 - varj))
            scatter[j] = np.sqrt(max(excess, 0.0))
            chi2 = float(np.sum(dev**2 / (varj + scatter[j] ** 2)) / (v.sum() - 1))
            # Variable: the excess scatter dwarfs the photon noise.
            if scatter[j] ** 2 > (variable_chi2 - 1.0) * float(np.median(varj)) or chi2 > 3.0:
                active[j] = False
    weights = np.zeros(n_stars)
    final_var = np.nanmedian(np.where(good, ec**2, np.nan), axis=0) + scatter**2
    weights[comps[active]] = 1.0 / final_var[active]
    comp_scatter = np.full(n_stars, np.nan)
    comp_scatter[comps] = scatter
    ref_all[comps] = np.where(active, anchor, ref_all[comps])
    mag = m - offset[:, None]
    mag_err = np.sqrt(e**2 + offset_err[:, None] ** 2)
    # Stars without a reference magnitude keep the offset scale; that is the ensemble's own.
    return EnsembleResult(
        mag=mag,
        mag_err=mag_err,
        frame_offset=offset,
        frame_offset_err=offset_err,
        weights=weights,
        ref_mag=ref_all,
        comp_scatter=comp_scatter,
        iterations=done,
    )
