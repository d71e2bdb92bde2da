"""Astrometric calibration: match detections to reference stars and fit a TAN(-SIP) WCS.

`match_and_fit` refines the approximate WCS that a raw header carries (mount pointing, nominal
pixel scale, nominal camera angle). Reference stars are projected into pixels with that WCS;
a triangle (asterism) matcher finds the similarity transform between them and the detections,
robust to pointing errors of several arcminutes and any camera rotation; then nearest-neighbour
matching, a linear least-squares TAN fit with optional SIP distortion, and sigma clipping are
iterated.

Why not a library:

- ``astroalign.find_transform`` on point lists took 0.50 s for 50 control points (1.3 s for
  100) on the 2-core target (Python loops over triangles, an O(n^2) de-duplication), where the
  whole matching and fit must take about 0.15 s; it also pulls in scikit-image and its
  dependencies and draws RANSAC samples from an unseeded generator.
- ``twirl`` requires astropy < 8, matplotlib and astroquery.
- ``astropy.wcs.utils.fit_wcs_from_points`` (non-linear least squares through the WCS object)
  took 0.4-0.6 s for 3000 stars. With the tangent point fixed, TAN plus SIP is linear in its
  coefficients, so it is fitted here by linear least squares and the tangent point is re-centred
  between iterations.

The matcher below is vectorised numpy over ``scipy.spatial.cKDTree``; it is deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from astropy.wcs import WCS, Sip
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from obsctl.errors import ObsctlError

__all__ = ["AstrometryResult", "NoSolution", "deproject_tan", "match_and_fit", "project_tan"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

# Control points per matching attempt: the brightest detections, escalating when the frame is
# hard (few stars in common among the brightest, crowded fields).
_CONTROL_LEVELS = (30, 60, 120)
_NEIGHBOURS = 5  # a point and its 5 nearest neighbours give C(6, 3) = 20 triangles
_MAX_REF_CONTROL = 600  # caps the reference control list on tiny fields with large offsets
_INVARIANT_TOL = 0.01  # side-ratio tolerance for two triangles to count as similar
_MIN_SIDE_PX = 8.0  # smaller triangles are dominated by centroid noise
_CLUSTERS_TRIED = 4  # candidate transforms verified per attempt before escalating
_MIN_FRACTION = 0.1  # of the bright control stars that a verified transform must pair
_MAX_AUTO_SIP = 4
_OUTER_ITERATIONS = 3
_CLIP_ITERATIONS = 3
_SIGMA_FLOOR_PX = 0.01  # keeps noise-free synthetic data from clipping everything
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))  # median of |r| / sigma for 2-D Gaussian r


class NoSolution(ObsctlError):
    """The detections could not be matched to the reference stars.

    Raised by `match_and_fit` for frames without enough stars, with no consistent match within
    the allowed pointing offset (clouds, wrong field, wrong pixel scale), or whose fit is
    degenerate. The caller keeps the approximate WCS and flags the frame.
    """


@dataclass(frozen=True, eq=False)
class AstrometryResult:
    """A fitted WCS and how well it fits.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The fitted celestial WCS: ``RA---TAN``/``DEC--TAN``, or ``-TAN-SIP`` with forward
        (A, B) and inverse (AP, BP) polynomials when distortion was fitted. CRPIX is the frame
        centre.
    n_matched : int
        Matched pairs kept after sigma clipping.
    rms_px : float
        Root mean square of the residual distance between matched detections and reference
        stars (pixel).
    rms_arcsec : float
        The same, on the sky (arcsec).
    matches : tuple of numpy.ndarray
        ``(idx_det, idx_ref)``: indices into the ``xy`` and ``sky`` arrays given to
        `match_and_fit`, one pair per kept match.
    sip_degree : int or None
        Degree of the SIP polynomials, None for a pure TAN fit.
    offset_arcmin : float
        Distance between the frame centre's position under the approximate WCS and under the
        fitted one (arcmin): the pointing error of the mount.
    rotation_deg : float
        Sky rotation of the fitted WCS minus that of the approximate one (deg, in the sense of
        FITS ``CROTA2``), in [-180, 180).
    scale_ratio : float
        Fitted pixel scale over the approximate one.
    flipped : bool
        True when the image turned out mirrored relative to the approximate WCS.
    """

    wcs: WCS
    n_matched: int
    rms_px: float
    rms_arcsec: float
    matches: tuple[IntArray, IntArray]
    sip_degree: int | None
    offset_arcmin: float
    rotation_deg: float
    scale_ratio: float
    flipped: bool


# ----------------------------------------------------------------------------- projections


def project_tan(
    ra_deg: FloatArray, dec_deg: FloatArray, ra0_deg: float, dec0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Project sky positions onto the tangent plane at a point (gnomonic projection).

    Parameters
    ----------
    ra_deg, dec_deg : numpy.ndarray
        Positions (deg).
    ra0_deg, dec0_deg : float
        Tangent point (deg).

    Returns
    -------
    xi, eta : numpy.ndarray
        Standard coordinates (deg), east and north; the intermediate world coordinates of a
        FITS ``TAN`` projection with CRVAL at the tangent point. Points 90 deg or more from
        the tangent point come back as NaN.
    """
    ra = np.radians(ra_deg)
    dec = np.radians(dec_deg)
    dra = ra - math.radians(ra0_deg)
    sin_d0, cos_d0 = math.sin(math.radians(dec0_deg)), math.cos(math.radians(dec0_deg))
    cos_dec = np.cos(dec)
    sin_dec = np.sin(dec)
    cos_dra = np.cos(dra)
    den = sin_dec * sin_d0 + cos_dec * cos_d0 * cos_dra
    den = np.where(den > 0.0, den, np.nan)
    xi = np.degrees(cos_dec * np.sin(dra) / den)
    eta = np.degrees((sin_dec * cos_d0 - cos_dec * sin_d0 * cos_dra) / den)
    return xi, eta


def deproject_tan(
    xi_deg: FloatArray, eta_deg: FloatArray, ra0_deg: float, dec0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Invert `project_tan`: standard coordinates back to RA and Dec.

    Parameters
    ----------
    xi_deg, eta_deg : numpy.ndarray
        Standard coordinates (deg).
    ra0_deg, dec0_deg : float
        Tangent point (deg).

    Returns
    -------
    ra_deg, dec_deg : numpy.ndarray
        Sky positions (deg), RA in [0, 360).
    """
    xi = np.radians(xi_deg)
    eta = np.radians(eta_deg)
    sin_d0, cos_d0 = math.sin(math.radians(dec0_deg)), math.cos(math.radians(dec0_deg))
    den = cos_d0 - eta * sin_d0
    ra = math.radians(ra0_deg) + np.arctan2(xi, den)
    dec = np.arctan2(eta * cos_d0 + sin_d0, np.hypot(xi, den))
    return np.degrees(ra) % 360.0, np.degrees(dec)


# ------------------------------------------------------------------------ triangle matching


def _triangles(points: FloatArray) -> tuple[IntArray, FloatArray]:
    """Return triangles among each point's nearest neighbours and their invariants.

    Vertices are ordered by the length of the opposite side (shortest first), so two similar
    triangles list corresponding vertices in the same order. The invariant is
    ``(middle / longest, orientation * shortest / longest)``: the sign keeps a triangle from
    matching its mirror image, which a proper similarity transform cannot produce.
    """
    n = points.shape[0]
    if n < 3:
        return np.empty((0, 3), dtype=np.intp), np.empty((0, 2))
    k = min(_NEIGHBOURS, n - 1)
    _, neighbours = cKDTree(points).query(points, k + 1)
    combos = np.array(
        [(a, b, c) for a in range(k + 1) for b in range(a + 1, k + 1) for c in range(b + 1, k + 1)],
        dtype=np.intp,
    )
    tri = neighbours[:, combos].reshape(-1, 3)
    tri = np.unique(np.sort(tri, axis=1), axis=0)

    p = points[tri]
    opposite = np.stack(
        [
            np.hypot(*(p[:, 1] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 2]).T),
            np.hypot(*(p[:, 0] - p[:, 1]).T),
        ],
        axis=1,
    )
    order = np.argsort(opposite, axis=1)
    tri = np.take_along_axis(tri, order, axis=1)
    sides = np.take_along_axis(opposite, order, axis=1)
    short, middle, longest = sides.T
    v = points[tri]
    cross = (v[:, 1, 0] - v[:, 0, 0]) * (v[:, 2, 1] - v[:, 0, 1]) - (v[:, 1, 1] - v[:, 0, 1]) * (
        v[:, 2, 0] - v[:, 0, 0]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        r_mid = middle / longest
        r_short = short / longest
        flat = np.abs(cross) / longest**2
    # Near-isosceles triangles have no stable vertex order, near-flat ones no stable
    # orientation; both would only add false candidates.
    good = (
        (longest >= _MIN_SIDE_PX)
        & (r_mid - r_short > 2 * _INVARIANT_TOL)
        & (1.0 - r_mid > 2 * _INVARIANT_TOL)
        & (flat > 0.02)
    )
    invariants = np.column_stack([r_mid, np.sign(cross) * r_short])[good]
    return tri[good], invariants


@dataclass(frozen=True)
class _Similarity:
    """``z_det = a * z_ref + b`` on complex pixel coordinates ``x + i y``."""

    a: complex
    b: complex

    def apply(self, xy: FloatArray) -> FloatArray:
        z = self.a * (xy[:, 0] + 1j * xy[:, 1]) + self.b
        return np.column_stack([z.real, z.imag])


def _candidate_transforms(
    det: FloatArray, ref: FloatArray
) -> tuple[NDArray[np.complex128], NDArray[np.complex128]]:
    """Similarity transforms ref -> det implied by every pair of similar triangles."""
    tri_d, inv_d = _triangles(det)
    tri_r, inv_r = _triangles(ref)
    empty = np.empty(0, dtype=np.complex128)
    if len(inv_d) == 0 or len(inv_r) == 0:
        return empty, empty
    pairs = cKDTree(inv_d).sparse_distance_matrix(
        cKDTree(inv_r), _INVARIANT_TOL, output_type="ndarray"
    )
    if len(pairs) == 0:
        return empty, empty
    zd = det[tri_d[pairs["i"]]]
    zr = ref[tri_r[pairs["j"]]]
    zd_c = zd[..., 0] + 1j * zd[..., 1]
    zr_c = zr[..., 0] + 1j * zr[..., 1]
    md = zd_c.mean(axis=1, keepdims=True)
    mr = zr_c.mean(axis=1, keepdims=True)
    # Least-squares similarity over the three vertices, in closed form.
    a = ((zd_c - md) * np.conj(zr_c - mr)).sum(axis=1) / (np.abs(zr_c - mr) ** 2).sum(axis=1)
    b = md[:, 0] - a * mr[:, 0]
    return a, b


def _mutual_nearest(
    src: FloatArray, dst: FloatArray, radius: float, dst_tree: cKDTree | None = None
) -> tuple[IntArray, IntArray]:
    """Pairs ``(i, j)`` where ``dst[j]`` is nearest to ``src[i]`` within radius and vice versa."""
    if len(src) == 0 or len(dst) == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    tree = dst_tree if dst_tree is not None else cKDTree(dst)
    dist, j = tree.query(src, k=1, distance_upper_bound=radius)
    i = np.flatnonzero(np.isfinite(dist))
    j = j[i]
    _, back = cKDTree(src).query(dst[j], k=1)
    mutual = back == i
    return i[mutual], j[mutual]


def _find_similarity(
    det: FloatArray,
    ref: FloatArray,
    *,
    centre: FloatArray,
    shape: tuple[int, int],
    max_offset_px: float,
    scale_tolerance: float,
    verify_radius_px: float,
    min_matches: int,
) -> _Similarity | None:
    """Find the similarity mapping reference pixel positions onto detections, or None.

    Parameters
    ----------
    det : numpy.ndarray
        Detections, brightest first, shape (N, 2) (pixel).
    ref : numpy.ndarray
        Reference stars projected with the approximate WCS, brightest first, restricted to
        the area the frame may cover, shape (M, 2) (pixel).
    """
    ny, nx = shape
    half_diag = 0.5 * math.hypot(nx, ny)
    c = complex(centre[0], centre[1])
    frame_area = float(nx * ny)
    footprint_area = math.pi * (half_diag + max_offset_px) ** 2
    # Transforms agree to within the centroid noise spread over the triangle sizes; 1 % of the
    # half-diagonal at the frame edge (plus a few pixels) keeps true votes together.
    cluster_radius = 0.01 * half_diag + 3.0

    tried: list[complex] = []
    for n_ctrl in _CONTROL_LEVELS:
        n_det = min(n_ctrl, len(det))
        # The same limiting magnitude over the larger footprint holds proportionally more stars.
        n_ref = min(len(ref), _MAX_REF_CONTROL, round(n_det * footprint_area / frame_area))
        if n_det < 3 or n_ref < 3:
            return None
        a, b = _candidate_transforms(det[:n_det], ref[:n_ref])
        if len(a):
            shift = a * c + b - c
            ok = (np.abs(np.abs(a) - 1.0) <= scale_tolerance) & (
                np.abs(shift) <= max_offset_px * 1.05 + 5.0
            )
            a, shift = a[ok], shift[ok]
        if len(a) >= 1:
            votes = np.column_stack(
                [a.real * half_diag, a.imag * half_diag, shift.real, shift.imag]
            )
            tree = cKDTree(votes)
            counts = np.asarray(tree.query_ball_point(votes, cluster_radius, return_length=True))
            alive = np.ones(len(a), dtype=bool)
            for _ in range(_CLUSTERS_TRIED):
                if not alive.any():
                    break
                best = int(np.argmax(np.where(alive, counts, -1)))
                members = np.asarray(tree.query_ball_point(votes[best], cluster_radius))
                alive[members] = False
                a0 = complex(np.median(a[members].real), np.median(a[members].imag))
                s0 = complex(np.median(shift[members].real), np.median(shift[members].imag))
                candidate = _Similarity(a0, s0 + c - a0 * c)
                if any(abs(candidate.a - t) * half_diag < 1.0 for t in tried):
                    continue
                tried.append(candidate.a)
                refined = _refine_and_verify(
                    candidate,
                    det[: 3 * n_det],
                    ref[: 3 * n_ref],
                    shape=shape,
                    start_radius=cluster_radius,
                    radius=verify_radius_px,
                    min_matches=min_matches,
                )
                if refined is not None:
                    return refined
        if n_det == len(det):
            break
    return None


def _fit_similarity(src: FloatArray, dst: FloatArray) -> _Similarity:
    """Least-squares similarity mapping ``src`` onto ``dst`` (closed form on complex numbers)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    a = complex(np.sum((zd - md) * np.conj(zs - ms)) / np.sum(np.abs(zs - ms) ** 2))
    return _Similarity(a, complex(md - a * ms))


def _refine_and_verify(
    transform: _Similarity,
    det: FloatArray,
    ref: FloatArray,
    *,
    shape: tuple[int, int],
    start_radius: float,
    radius: float,
    min_matches: int,
) -> _Similarity | None:
    """Polish a candidate on all control stars; accept it only if it is significant.

    A vote cluster's median can be off by a fraction of a degree, which leaves only the
    stars near one point in the frame matched; re-matching with a shrinking radius and
    refitting converges on the true transform when the candidate is right. It is accepted
    when far more stars pair up than chance coincidences would give.
    """
    ny, nx = shape
    for r in (start_radius, math.sqrt(start_radius * radius), radius):
        moved = transform.apply(ref)
        i, j = _mutual_nearest(det, moved, r)
        if len(i) < 3:
            return None
        transform = _fit_similarity(ref[j], det[i])
    moved = transform.apply(ref)
    inside = (moved[:, 0] > -0.5) & (moved[:, 0] < nx - 0.5) & (moved[:, 1] > -0.5)
    inside &= moved[:, 1] < ny - 0.5
    moved = moved[inside]
    i, _ = _mutual_nearest(det, moved, radius)
    expected = len(moved) * len(det) * math.pi * radius**2 / (nx * ny)
    # The refinement tunes four parameters to the same stars it counts, so chance alone can
    # beat the Poisson bound now and then; true solutions also pair a good share of the
    # bright stars (38 % or more in simulated hard cases, about 5 % for random points).
    fraction = len(i) / max(1, min(len(det), len(moved)))
    if len(i) >= max(min_matches, _significant(expected)) and fraction >= _MIN_FRACTION:
        return transform
    return None


def _significant(expected: float) -> float:
    """Match count that chance coincidences (Poisson mean ``expected``) practically never reach."""
    return expected + 5.0 * math.sqrt(expected) + 3.0


# ---------------------------------------------------------------------------- linear WCS fit


def _monomials(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(p, q)`` of ``u**p * v**q`` up to total degree, constant first."""
    return [(p, t - p) for t in range(degree + 1) for p in range(t, -1, -1)]


def _matmul(a: FloatArray, b: FloatArray) -> FloatArray:
    """Matrix product of a tall array with a small one, on one thread.

    Multi-threaded BLAS (OpenBLAS) on these tall, skinny products spins its threads against
    the other pipeline worker on a 2-core machine: calls of a few milliseconds then took up to
    85 ms. ``einsum`` without ``optimize`` uses numpy's own loops, never BLAS.
    """
    out: FloatArray = np.einsum("ij,jk->ik", a, b)
    return out


def _lstsq(design: FloatArray, rhs: FloatArray) -> FloatArray:
    """Least-squares solution by normal equations on one thread (see `_matmul`).

    Columns are scaled to unit norm first; with pixel offsets scaled into [-1, 1] the
    monomials up to degree 6 stay well enough conditioned for float64 normal equations.
    """
    norms = np.sqrt(np.einsum("ij,ij->j", design, design))
    norms[norms == 0] = 1.0
    scaled = design / norms
    gram = np.einsum("ij,ik->jk", scaled, scaled)
    coeffs: FloatArray = np.linalg.solve(gram, np.einsum("ij,ik->jk", scaled, rhs))
    out: FloatArray = coeffs / norms[:, None]
    return out


def _design(u: FloatArray, v: FloatArray, degree: int) -> FloatArray:
    pu = [np.ones_like(u)]
    pv = [np.ones_like(v)]
    for _ in range(degree):
        pu.append(pu[-1] * u)
        pv.append(pv[-1] * v)
    return np.column_stack([pu[p] * pv[q] for p, q in _monomials(degree)])


@dataclass(frozen=True)
class _PolyFit:
    """Standard coordinates (deg) as polynomials in scaled pixel offsets ``(u, v) / norm``."""

    degree: int
    coeffs: FloatArray  # (n_terms, 2): columns xi, eta
    norm: float
    crpix0: FloatArray  # zero-based reference pixel

    def __call__(self, xy: FloatArray) -> FloatArray:
        u = (xy[:, 0] - self.crpix0[0]) / self.norm
        v = (xy[:, 1] - self.crpix0[1]) / self.norm
        out: FloatArray = _matmul(_design(u, v, self.degree), self.coeffs)
        return out

    @property
    def cd(self) -> FloatArray:
        """Linear terms per pixel (deg/px), the CD matrix."""
        # Rows of coeffs 1, 2 are the u and v terms (see _monomials).
        return np.array(self.coeffs[1:3].T / self.norm)


def _fit_poly(
    xy: FloatArray, std: FloatArray, degree: int, *, norm: float, crpix0: FloatArray
) -> tuple[_PolyFit, float]:
    """Least-squares fit; returns the fit and its residual sum of squares (deg^2)."""
    u = (xy[:, 0] - crpix0[0]) / norm
    v = (xy[:, 1] - crpix0[1]) / norm
    design = _design(u, v, degree)
    coeffs = _lstsq(design, std)
    resid = std - _matmul(design, coeffs)
    return _PolyFit(degree, coeffs, norm, crpix0), float(np.sum(resid**2))


def _coverage_ok(xy: FloatArray, shape: tuple[int, int]) -> bool:
    """Tell whether matches fill most of a 4x4 grid: distortion terms need the corners too."""
    ny, nx = shape
    gx = np.clip((xy[:, 0] / nx * 4).astype(int), 0, 3)
    gy = np.clip((xy[:, 1] / ny * 4).astype(int), 0, 3)
    counts = np.bincount(gy * 4 + gx, minlength=16)
    return int(np.count_nonzero(counts >= 2)) >= 12


def _max_degree(n: int, xy: FloatArray, shape: tuple[int, int], ceiling: int) -> int:
    """Highest polynomial degree the matches support (1 = linear, no SIP)."""
    degree = 1
    if not _coverage_ok(xy, shape):
        return 1
    for d in range(2, ceiling + 1):
        n_terms = (d + 1) * (d + 2) // 2
        if n >= 5 * n_terms:
            degree = d
    return degree


def _choose_degree(
    xy: FloatArray,
    std: FloatArray,
    *,
    max_degree: int,
    norm: float,
    crpix0: FloatArray,
) -> int:
    """Pick the degree with the lowest Bayesian information criterion on the same inliers."""
    n_obs = 2 * len(xy)
    best, best_bic = 1, math.inf
    for d in range(1, max_degree + 1):
        _, rss = _fit_poly(xy, std, d, norm=norm, crpix0=crpix0)
        n_par = 2 * (d + 1) * (d + 2) // 2
        bic = n_obs * math.log(max(rss, 1e-30) / n_obs) + n_par * math.log(n_obs)
        if bic < best_bic:
            best, best_bic = d, bic
    return best


def _residual_px(fit: _PolyFit, xy: FloatArray, std: FloatArray, scale_deg: float) -> FloatArray:
    d = fit(xy) - std
    r: FloatArray = np.hypot(d[:, 0], d[:, 1]) / scale_deg
    return r


def _clip_fit(
    xy: FloatArray,
    std: FloatArray,
    degree: int,
    *,
    norm: float,
    crpix0: FloatArray,
    scale_deg: float,
    clip_sigma: float,
    min_matches: int,
) -> tuple[_PolyFit, NDArray[np.bool_]]:
    """Fit, reject residuals beyond ``clip_sigma`` robust sigmas, refit."""
    keep = np.ones(len(xy), dtype=bool)
    fit, _ = _fit_poly(xy, std, degree, norm=norm, crpix0=crpix0)
    for _ in range(_CLIP_ITERATIONS):
        r = _residual_px(fit, xy, std, scale_deg)
        sigma = max(float(np.median(r[keep])) / _RAYLEIGH_MEDIAN, _SIGMA_FLOOR_PX)
        new_keep = r <= clip_sigma * sigma
        if new_keep.sum() < min_matches or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        fit, _ = _fit_poly(xy[keep], std[keep], degree, norm=norm, crpix0=crpix0)
    return fit, keep


def _recentre(
    fit: _PolyFit, tangent: tuple[float, float], shape: tuple[int, int]
) -> tuple[_PolyFit, tuple[float, float]]:
    """Move the tangent point to the fitted position of the reference pixel.

    Standard coordinates on the new plane are not a shifted copy of the old ones: far from
    the equator a tangent point moved in RA also turns north (by about dRA * sin(Dec)), so the
    model is carried over by re-fitting it on a grid of sky positions.
    """
    ny, nx = shape
    ra_t, dec_t = deproject_tan(fit.coeffs[:1, 0], fit.coeffs[:1, 1], *tangent)
    new_tangent = (float(ra_t[0]), float(dec_t[0]))
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 10), np.linspace(0, ny - 1, 10))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    std = fit(grid)
    ra, dec = deproject_tan(std[:, 0], std[:, 1], *tangent)
    xi, eta = project_tan(ra, dec, *new_tangent)
    moved, _ = _fit_poly(
        grid, np.column_stack([xi, eta]), fit.degree, norm=fit.norm, crpix0=fit.crpix0
    )
    return moved, new_tangent


def _sip_wcs(
    fit: _PolyFit,
    crval: tuple[float, float],
    shape: tuple[int, int],
) -> WCS:
    """Turn a polynomial fit into an astropy WCS (TAN, or TAN-SIP with inverse terms)."""
    ny, nx = shape
    cd = fit.cd
    wcs = WCS(naxis=2)
    wcs.wcs.crpix = fit.crpix0 + 1.0
    wcs.wcs.crval = [crval[0] % 360.0, crval[1]]
    wcs.wcs.cd = cd
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.pixel_shape = (nx, ny)
    if fit.degree < 2:
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.set()
        return wcs
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    order = fit.degree
    cd_inv = np.linalg.inv(cd)
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    for row, (p, q) in enumerate(_monomials(order)):
        if p + q < 2:
            continue
        # SIP: std = CD @ (u + A(u, v), v + B(u, v)), so (A, B) = CD^-1 @ non-linear terms.
        a[p, q], b[p, q] = cd_inv @ fit.coeffs[row] / fit.norm ** (p + q)

    # Inverse polynomials on a grid over the frame (and a little beyond), one order higher.
    gx, gy = np.meshgrid(
        np.linspace(-0.05 * nx, 1.05 * nx, 33), np.linspace(-0.05 * ny, 1.05 * ny, 33)
    )
    u = gx.ravel() - fit.crpix0[0]
    v = gy.ravel() - fit.crpix0[1]
    uu = u + sum(a[p, q] * u**p * v**q for p, q in _monomials(order) if p + q >= 2)
    vv = v + sum(b[p, q] * u**p * v**q for p, q in _monomials(order) if p + q >= 2)
    inv_order = order + 1
    terms = _monomials(inv_order)
    design = _design(uu / fit.norm, vv / fit.norm, inv_order)
    coeffs = _lstsq(design, np.column_stack([u - uu, v - vv]))
    ap = np.zeros((inv_order + 1, inv_order + 1))
    bp = np.zeros((inv_order + 1, inv_order + 1))
    for row, (p, q) in enumerate(terms):
        ap[p, q], bp[p, q] = coeffs[row] / fit.norm ** (p + q)
    wcs.sip = Sip(a, b, ap, bp, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


# ------------------------------------------------------------------------------ entry point


def _as_points(name: str, array: Any) -> FloatArray:
    points = np.asarray(array, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {points.shape}")
    return points


def match_and_fit(
    xy: FloatArray,
    sky: FloatArray,
    approx_wcs: WCS,
    *,
    image_shape: tuple[int, int] | None = None,
    max_offset_arcmin: float = 10.0,
    sip_degree: int | Literal["auto"] | None = "auto",
    match_radius_px: float = 3.0,
    scale_tolerance: float = 0.05,
    clip_sigma: float = 3.5,
    min_matches: int = 8,
) -> AstrometryResult:
    """Match detections to reference stars and fit a WCS.

    Parameters
    ----------
    xy : numpy.ndarray
        Detected source positions, shape (N, 2), zero-based pixel coordinates (x, y) as SEP
        gives them, brightest first. Non-finite rows are ignored.
    sky : numpy.ndarray
        Reference star positions, shape (M, 2), ICRS (RA, Dec) in degrees, brightest first.
        Should cover the frame plus `max_offset_arcmin`.
    approx_wcs : astropy.wcs.WCS
        Approximate celestial WCS (from the mount pointing). Its linear part (scale, rotation,
        parity) and its value at the frame centre are used.
    image_shape : tuple of int, optional
        ``(ny, nx)`` of the image (pixel). Defaults to ``approx_wcs.pixel_shape``, else the
        extent of `xy`.
    max_offset_arcmin : float, optional
        Largest pointing error searched (arcmin). Camera rotation is unconstrained.
    sip_degree : int, "auto" or None, optional
        SIP distortion degree: None or 0 for a pure TAN fit, 2-5 for that degree (lowered when
        the matches cannot support it), ``"auto"`` to choose 0 or 2-4 by the Bayesian
        information criterion when enough matches cover the frame.
    match_radius_px : float, optional
        Largest distance between a detection and its reference star (pixel), used once the
        transform is known. Twice this is allowed while verifying a candidate transform.
    scale_tolerance : float, optional
        Largest relative error of the approximate pixel scale.
    clip_sigma : float, optional
        Matches farther than this many robust standard deviations (per axis) from the fit are
        rejected.
    min_matches : int, optional
        Fewest matched stars accepted as a solution.

    Returns
    -------
    AstrometryResult
        The fitted WCS, the kept matches and the residual RMS.

    Raises
    ------
    NoSolution
        When there are too few stars, no transform is consistent with enough of them, or the
        fit is degenerate.
    ValueError
        When an array has the wrong shape or a knob is out of range.
    """
    det_all = _as_points("xy", xy)
    sky_all = _as_points("sky", sky)
    if max_offset_arcmin < 0 or match_radius_px <= 0 or not 0 < scale_tolerance < 1:
        raise ValueError(
            "need max_offset_arcmin >= 0, match_radius_px > 0, 0 < scale_tolerance < 1"
        )
    if sip_degree == "auto":
        degree_request: int | None = None
    elif sip_degree is None or sip_degree == 0:
        degree_request = 1
    elif isinstance(sip_degree, int) and 2 <= sip_degree <= 5:
        degree_request = sip_degree
    else:
        raise ValueError(f"sip_degree must be 'auto', None, 0 or 2-5, got {sip_degree!r}")
    min_matches = max(min_matches, 4)

    det_idx = np.flatnonzero(np.isfinite(det_all).all(axis=1))
    sky_idx = np.flatnonzero(np.isfinite(sky_all).all(axis=1))
    det = det_all[det_idx]
    if len(det) < min_matches or len(sky_idx) < min_matches:
        raise NoSolution(
            f"too few stars: {len(det)} detections, {len(sky_idx)} reference stars "
            f"(need {min_matches})"
        )

    if image_shape is not None:
        ny, nx = (int(image_shape[0]), int(image_shape[1]))
    elif approx_wcs.pixel_shape is not None:
        nx, ny = (int(approx_wcs.pixel_shape[0]), int(approx_wcs.pixel_shape[1]))
    else:
        nx = math.ceil(det[:, 0].max()) + 1
        ny = math.ceil(det[:, 1].max()) + 1
    shape = (ny, nx)
    crpix0 = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    norm = 0.5 * max(nx, ny)

    # Tangent plane at the approximate frame centre; reference "pixels" through the
    # approximate linear transform (any distortion of the approximate WCS is ignored).
    approx = approx_wcs.celestial
    ra_c, dec_c = (float(v) for v in approx.all_pix2world(crpix0[0], crpix0[1], 0))
    cd_approx = np.asarray(approx.pixel_scale_matrix, dtype=np.float64)
    if not np.isfinite(cd_approx).all() or abs(np.linalg.det(cd_approx)) == 0:
        raise ValueError("approx_wcs has a singular or non-finite pixel scale matrix")
    scale_deg = math.sqrt(abs(float(np.linalg.det(cd_approx))))
    cd_approx_inv = np.asarray(np.linalg.inv(cd_approx), dtype=np.float64)
    xi, eta = project_tan(sky_all[sky_idx, 0], sky_all[sky_idx, 1], ra_c, dec_c)
    front = np.isfinite(xi)
    sky_idx = sky_idx[front]
    ref_std = np.column_stack([xi[front], eta[front]])
    ref_pix = _matmul(ref_std, cd_approx_inv.T) + crpix0

    max_offset_px = max_offset_arcmin / 60.0 / scale_deg
    reach = 0.5 * math.hypot(nx, ny) + max_offset_px + 2 * match_radius_px
    near = np.hypot(*(ref_pix - crpix0).T) <= reach
    ctrl_ref_idx = np.flatnonzero(near)

    solution: _Similarity | None = None
    flipped = False
    for parity in (1.0, -1.0):
        # A mirrored image (an extra reflection in the optics) cannot match by rotation: try
        # the reference stars reflected about the centre row when the direct match fails.
        ref_ctrl = ref_pix[ctrl_ref_idx].copy()
        if parity < 0:
            ref_ctrl[:, 1] = 2 * crpix0[1] - ref_ctrl[:, 1]
        solution = _find_similarity(
            det,
            ref_ctrl,
            centre=crpix0,
            shape=shape,
            max_offset_px=max_offset_px,
            scale_tolerance=scale_tolerance,
            verify_radius_px=2.0 * match_radius_px,
            min_matches=min_matches,
        )
        if solution is not None:
            flipped = parity < 0
            break
    if solution is None:
        raise NoSolution(
            f"no consistent match between {len(det)} detections and {len(ctrl_ref_idx)} "
            f"reference stars within {max_offset_arcmin:g} arcmin"
        )

    ref_moved = solution.apply(ref_ctrl)
    n_ref_in_frame = int(
        np.count_nonzero(
            (ref_moved[:, 0] > -0.5)
            & (ref_moved[:, 0] < nx - 0.5)
            & (ref_moved[:, 1] > -0.5)
            & (ref_moved[:, 1] < ny - 0.5)
        )
    )

    # Initial linear model det pixel -> standard coordinates: undo the similarity (and the
    # reflection), then the approximate CD.
    a_inv = 1.0 / solution.a
    m_sim = np.array([[a_inv.real, -a_inv.imag], [a_inv.imag, a_inv.real]])
    if flipped:
        m_sim = np.diag([1.0, -1.0]) @ m_sim
    ref_c = (crpix0[0] + 1j * crpix0[1] - solution.b) * a_inv
    offset = np.array([ref_c.real, ref_c.imag])
    if flipped:
        offset[1] = 2 * crpix0[1] - offset[1]
    linear = cd_approx @ m_sim  # det offset from centre -> std
    std_at_centre = cd_approx @ (offset - crpix0)
    coeffs = np.zeros((3, 2))
    coeffs[0] = std_at_centre
    coeffs[1:3] = (linear * norm).T
    fit = _PolyFit(1, coeffs, norm, crpix0)

    tangent = (ra_c, dec_c)
    keep = np.zeros(0, dtype=bool)
    i_det = j_ref = np.empty(0, dtype=np.intp)
    for iteration in range(_OUTER_ITERATIONS):
        # Re-centre the tangent plane on the fitted position of the reference pixel, so the
        # polynomial's constant term vanishes and CRVAL can sit at CRPIX.
        fit, tangent = _recentre(fit, tangent, shape)
        xi, eta = project_tan(sky_all[sky_idx, 0], sky_all[sky_idx, 1], *tangent)
        ok = np.isfinite(xi)
        ref_std = np.column_stack([np.where(ok, xi, 1e3), np.where(ok, eta, 1e3)])
        det_std = fit(det)
        radius = (2.0 if iteration == 0 else 1.0) * match_radius_px * scale_deg
        i_det, j_ref = _mutual_nearest(det_std, ref_std, radius)
        if len(i_det) < min_matches:
            raise NoSolution(f"only {len(i_det)} stars matched after the initial transform")
        xy_m, std_m = det[i_det], ref_std[j_ref]
        if degree_request is None:
            ceiling = _max_degree(len(i_det), xy_m, shape, _MAX_AUTO_SIP)
        else:
            ceiling = min(degree_request, _max_degree(len(i_det), xy_m, shape, degree_request))
        # The first pass only locks on; distortion is fitted once matches are reliable.
        degree = 1 if iteration == 0 else ceiling
        fit, keep = _clip_fit(
            xy_m,
            std_m,
            degree,
            norm=norm,
            crpix0=crpix0,
            scale_deg=scale_deg,
            clip_sigma=clip_sigma,
            min_matches=min_matches,
        )
        if degree_request is None and iteration > 0 and ceiling > 1:
            chosen = _choose_degree(
                xy_m[keep], std_m[keep], max_degree=ceiling, norm=norm, crpix0=crpix0
            )
            if chosen != degree:
                fit, keep = _clip_fit(
                    xy_m,
                    std_m,
                    chosen,
                    norm=norm,
                    crpix0=crpix0,
                    scale_deg=scale_deg,
                    clip_sigma=clip_sigma,
                    min_matches=min_matches,
                )
        scale_deg = math.sqrt(abs(float(np.linalg.det(fit.cd))))

    n_kept = int(keep.sum())
    chance = len(det) * n_ref_in_frame * math.pi * match_radius_px**2 / (nx * ny)
    if n_kept < max(min_matches, _significant(chance)):
        raise NoSolution(
            f"only {n_kept} matches survived sigma clipping (chance alone gives {chance:.1f})"
        )
    # The last fit's constant term is the (tiny) remaining tangent-point offset.
    ra_t, dec_t = deproject_tan(fit.coeffs[:1, 0], fit.coeffs[:1, 1], *tangent)
    crval = (float(ra_t[0]), float(dec_t[0]))
    final = _PolyFit(fit.degree, fit.coeffs.copy(), norm, crpix0)
    final.coeffs[0] = 0.0
    wcs = _sip_wcs(final, crval, shape)

    xy_k = det[i_det[keep]]
    resid_px = _residual_px(fit, xy_k, ref_std[j_ref[keep]], scale_deg)
    rms_px = float(np.sqrt(np.mean(resid_px**2)))
    # Chance pairs spread evenly over the match circle (rms 0.7 radius); true ones cluster.
    if rms_px > 0.5 * match_radius_px:
        raise NoSolution(f"match rms {rms_px:.2f} px is not better than chance pairs")

    sep_deg = _angular_distance(ra_c, dec_c, *crval)
    scale_approx = math.sqrt(abs(float(np.linalg.det(cd_approx))))
    return AstrometryResult(
        wcs=wcs,
        n_matched=n_kept,
        rms_px=rms_px,
        rms_arcsec=rms_px * scale_deg * 3600.0,
        matches=(det_idx[i_det[keep]], sky_idx[j_ref[keep]]),
        sip_degree=fit.degree if fit.degree >= 2 else None,
        offset_arcmin=sep_deg * 60.0,
        rotation_deg=(_crota_deg(fit.cd) - _crota_deg(cd_approx) + 180.0) % 360.0 - 180.0,
        scale_ratio=scale_deg / scale_approx,
        flipped=flipped,
    )


def _crota_deg(cd: FloatArray) -> float:
    """Sky rotation of a CD matrix in the sense of FITS ``CROTA2`` (deg)."""
    # CD = diag(CDELT) @ PC(CROTA2) with CDELT = (-s, s) for the usual parity (east left when
    # north is up), (s, s) for a mirrored image.
    if np.linalg.det(cd) < 0:
        return math.degrees(math.atan2(-(cd[1, 0] + cd[0, 1]), cd[1, 1] - cd[0, 0]))
    return math.degrees(math.atan2(cd[0, 1] - cd[1, 0], cd[0, 0] + cd[1, 1]))


def _angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance (deg), haversine form."""
    d1, d2 = math.radians(dec1), math.radians(dec2)
    h = (
        math.sin((d2 - d1) / 2) ** 2
        + math.cos(d1) * math.cos(d2) * math.sin(math.radians(ra2 - ra1) / 2) ** 2
    )
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))
