"""align_reference: the reference lands on the new frame's grid, edges and bad pixels masked."""

from __future__ import annotations

import numpy as np
import pytest
import sep

from obsctl.processing.alignment import align_reference
from obsctl.simulators.pairs import render_pair


def _bright_stars(pair, margin: float = 15.0):  # type: ignore[no-untyped-def]
    stars = pair.new_truth.stars
    size = pair.new.shape[0]
    keep = (
        (stars["id"] >= 0)
        & (stars["mag"] < 16.0)
        & (stars["x"] > margin)
        & (stars["x"] < size - margin)
        & (stars["y"] > margin)
        & (stars["y"] < size - margin)
    )
    return stars[keep]


@pytest.mark.parametrize(
    ("shift", "rotation", "method"),
    [((3.3, -2.7), 0.0, "shift"), ((-5.6, 4.2), 0.7, "map")],
)
def test_aligned_stars_fall_on_the_new_frame_positions(
    shift: tuple[float, float], rotation: float, method: str
) -> None:
    pair = render_pair(
        shift_px=shift,
        rotation_deg=rotation,
        seeing_new_arcsec=2.5,
        seed=4,
        density_per_deg2=40000.0,
    )
    aligned = align_reference(
        pair.reference,
        reference_wcs=pair.reference_wcs,
        target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
    )
    assert aligned.method == method
    stars = _bright_stars(pair)
    assert stars.size >= 8
    # Centroids of the reference's stars after alignment, against the new frame's truth (the
    # same stars, same seeing: any centroiding bias is common and cancels in the median).
    x_ref, y_ref, _ = sep.winpos(aligned.image, stars["x"], stars["y"], np.full(stars.size, 1.1))
    x_new, y_new, _ = sep.winpos(pair.new, stars["x"], stars["y"], np.full(stars.size, 1.1))
    offset = np.hypot(np.median(x_ref - x_new), np.median(y_ref - y_new))
    assert offset < 0.05
    # Each star against its own truth, too (noise-limited scatter of bright stars).
    assert np.median(np.hypot(x_ref - stars["x"], y_ref - stars["y"])) < 0.05


def test_uncovered_edges_and_bad_pixels_are_masked() -> None:
    pair = render_pair(shift_px=(6.4, -3.2))
    bad = np.zeros(pair.reference.shape, dtype=bool)
    bad[100, 120] = True
    reference = pair.reference.copy()
    reference[50, 60] = np.nan
    aligned = align_reference(
        reference,
        reference_wcs=pair.reference_wcs,
        target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
        mask=bad,
    )
    # New pixel x maps to reference x + 6.4: the last 7 columns fall off the reference (with
    # the cubic kernel's reach), y - 3.2 leaves the first 4-5 rows uncovered.
    assert aligned.mask[:, -7:].all() and aligned.mask[:4].all()
    assert not aligned.mask[10:-10, 10:-10][20:30, 20:30].any()
    # Reference pixel (120, 100) sits at new (113.6, 103.2); (60, 50) at (53.6, 53.2).
    assert aligned.mask[103, 113] and aligned.mask[103, 114]
    assert aligned.mask[53, 53] and aligned.mask[53, 54]
    assert np.all(aligned.image[aligned.mask] == 0.0)
    assert np.isfinite(aligned.image).all()


def test_flux_is_kept() -> None:
    pair = render_pair(shift_px=(2.5, 1.5), rotation_deg=0.3, density_per_deg2=40000.0)
    aligned = align_reference(
        pair.reference,
        reference_wcs=pair.reference_wcs,
        target_wcs=pair.new_wcs,
        target_shape=pair.new.shape,
        variance=np.full(pair.reference.shape, 4.0),
    )
    stars = _bright_stars(pair)
    flux, _, _ = sep.sum_circle(aligned.image, stars["x"], stars["y"], 8.0)
    # The same stars measured alike on the reference as rendered, at its truth positions.
    ref = pair.reference_truth.stars
    rows = np.searchsorted(ref["id"], stars["id"], sorter=np.argsort(ref["id"]))
    ref = ref[np.argsort(ref["id"])][rows]
    assert np.array_equal(ref["id"], stars["id"])
    before, _, _ = sep.sum_circle(pair.reference, ref["x"], ref["y"], 8.0)
    assert np.median(flux / before) == pytest.approx(1.0, abs=0.005)
    assert aligned.variance is not None
    valid = ~aligned.mask
    assert np.allclose(aligned.variance[valid], 4.0, rtol=1e-5)
