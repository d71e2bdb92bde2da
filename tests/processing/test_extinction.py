"""The night's photometric solution on synthetic nights whose truth is the generator's input.

A night: frames at airmass 1.0-2.5 in B, V and R, each with stars of known reference
magnitude and colour. Instrumental magnitudes follow the issue's notation::

    inst = ref + c * colour + k * X - ZP0 + cloud + noise

so the fitted ``colour_term`` (``m = m_inst + zp + colour_term * colour``) is ``-c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from obsctl.processing.extinction import fit_extinction

# Truth per filter: zero point above the atmosphere, extinction (mag/airmass), colour coeff.
TRUTH = {
    "B": {"zp0": 22.1, "k": 0.25, "c": 0.12},
    "V": {"zp0": 22.6, "k": 0.15, "c": -0.05},
    "R": {"zp0": 22.4, "k": 0.10, "c": 0.03},
}


@dataclass
class Night:
    """Star measurements of one filter's frames, with the truth they were made from."""

    frame: np.ndarray
    airmass: np.ndarray
    inst: np.ndarray
    err: np.ndarray
    ref: np.ndarray
    colour: np.ndarray
    true_mag: np.ndarray
    cloud: dict[int, float] = field(default_factory=dict)  # frame -> grey extinction (mag)


def night(
    filt: str,
    *,
    frames: int = 100,
    stars: int = 100,
    seed: int = 0,
    clouds: float = 0.0,
    cloudy_fraction: float = 0.0,
    frame_jitter: float = 0.003,
    outliers: float = 0.02,
) -> Night:
    """Simulate one filter of a night (see the module docstring)."""
    truth = TRUTH[filt]
    rng = np.random.default_rng(seed)
    airmass = np.concatenate(
        [np.linspace(2.5, 1.0, frames // 2), np.linspace(1.0, 2.5, frames - frames // 2)]
    )
    ref_all = rng.uniform(10.0, 17.0, stars)
    colour_all = rng.uniform(-0.2, 1.6, stars)  # B-V
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("f", "x", "inst", "err", "ref", "col")}
    cloud: dict[int, float] = {}
    for i, x in enumerate(airmass):
        grey = 0.0
        if clouds > 0 and rng.uniform() < cloudy_fraction:
            grey = rng.uniform(0.2, 1.0) * clouds
        cloud[i] = grey
        # Photon noise: 0.002 mag at 10th, growing faintward; a little per-frame jitter.
        err = 0.002 * 10 ** (0.2 * (ref_all - 10.0))
        inst = (
            ref_all
            + truth["c"] * colour_all
            + truth["k"] * x
            - truth["zp0"]
            + grey
            + rng.normal(0.0, frame_jitter)
            + rng.normal(0.0, 1.0, stars) * err
        )
        bad = rng.uniform(size=stars) < outliers  # variables, blends: pulled by 0.1-0.5 mag
        inst[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(0.1, 0.5, bad.sum())
        for key, value in (
            ("f", np.full(stars, i)),
            ("x", np.full(stars, x)),
            ("inst", inst),
            ("err", err),
            ("ref", ref_all),
            ("col", colour_all),
        ):
            rows[key].append(value)
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    return Night(
        cat["f"], cat["x"], cat["inst"], cat["err"], cat["ref"], cat["col"], cat["ref"], cloud
    )


def fit(n: Night, **kwargs):
    return fit_extinction(n.frame, n.airmass, n.inst, n.err, n.ref, colour=n.colour, **kwargs)


@pytest.mark.parametrize("filt", sorted(TRUTH))
def test_clear_night_recovers_extinction_and_colour_term(filt: str) -> None:
    truth = TRUTH[filt]
    result = fit(night(filt, seed=ord(filt)))
    assert result.mode == "all-sky" and result.photometric, result.reason
    assert result.k == pytest.approx(truth["k"], abs=0.01)
    assert result.colour_term == pytest.approx(-truth["c"], abs=0.01)
    assert result.zp0 == pytest.approx(truth["zp0"], abs=0.02)
    # The errors are honest: the truth within 4 sigma, and small.
    assert abs(result.k - truth["k"]) < 4 * result.k_err < 0.01
    assert abs(result.colour_term + truth["c"]) < 4 * result.colour_term_err < 0.01
    assert result.n_frames == 100 and result.n_frames_used >= 97  # 3 sigma clips a few
    assert result.frame_rms < 0.01
    # Frame zero points fall with airmass, on the line; the residuals are small.
    fr = result.frames
    assert np.corrcoef(fr.airmass, fr.zero_point)[0, 1] < -0.99
    assert np.all(np.abs(fr.residual) < 0.015)
    # The outliers (2 %) are clipped, the rest kept.
    assert 0.95 < result.n_stars / result.star_used.size < 0.99


def test_zero_points_differ_by_filter() -> None:
    fits = {f: fit(night(f, seed=ord(f))) for f in TRUTH}
    at_one = {f: float(r.zero_point_at(1.0)) for f, r in fits.items()}
    for f, truth in TRUTH.items():
        assert at_one[f] == pytest.approx(truth["zp0"] - truth["k"], abs=0.02)
    assert at_one["V"] - at_one["B"] > 0.3


def test_a_few_clouded_frames_are_clipped_and_the_night_stays_photometric() -> None:
    truth = TRUTH["V"]
    n = night("V", seed=3, clouds=0.5, cloudy_fraction=0.05)
    clouded = {i for i, grey in n.cloud.items() if grey > 0}
    assert 2 <= len(clouded) <= 10
    result = fit(n)
    assert result.mode == "all-sky" and result.photometric
    assert result.k == pytest.approx(truth["k"], abs=0.01)
    off_line = set(result.frames.frame[~result.frames.used].tolist())
    assert off_line == clouded
    # A clouded frame's residual is its cloud: the light it lost (negative zero point).
    for i in clouded:
        assert result.frames.residual[i] == pytest.approx(-n.cloud[i], abs=0.01)


def test_a_cloudy_night_is_differential_and_still_calibrates() -> None:
    truth = TRUTH["R"]
    n = night("R", seed=4, clouds=0.6, cloudy_fraction=0.5)
    result = fit(n)
    assert not result.photometric and result.mode == "differential"
    assert "not photometric" in result.reason
    assert np.isnan(result.k) and np.isnan(result.zp0)
    assert result.colour_term == pytest.approx(-truth["c"], abs=0.01)
    # Per-frame zero points absorb the clouds: each is the truth of its frame.
    fr = result.frames
    true_zp = truth["zp0"] - truth["k"] * fr.airmass - np.array([n.cloud[i] for i in fr.frame])
    assert np.max(np.abs(fr.zero_point - true_zp)) < 0.01
    # Calibrated magnitudes of S/N > 100 stars (error < 0.0109 mag) within 0.01 mag.
    idx = np.searchsorted(fr.frame, n.frame)
    mag = n.inst + fr.zero_point[idx] + result.colour_term * n.colour
    bright = (n.err < 0.0109) & result.star_used
    assert np.max(np.abs(mag[bright] - n.true_mag[bright])) < 0.01 + 4 * 0.0109
    assert np.sqrt(np.mean((mag[bright] - n.true_mag[bright]) ** 2)) < 0.01


def test_thin_cirrus_everywhere_is_not_photometric() -> None:
    # Every frame a little clouded (0-0.1 mag): no frame stands out, the scatter does.
    n = night("B", seed=5, clouds=0.1, cloudy_fraction=1.0)
    result = fit(n)
    assert not result.photometric and result.frame_rms > 0.02


def test_small_airmass_range_gives_no_extinction() -> None:
    n = night("V", seed=6, frames=30)
    keep = n.airmass < 1.2
    sub = fit_extinction(
        n.frame[keep], n.airmass[keep], n.inst[keep], n.err[keep], n.ref[keep],
        colour=n.colour[keep],
    )  # fmt: skip
    assert sub.mode == "differential" and sub.photometric
    assert "airmass spans" in sub.reason and np.isnan(sub.k)
    assert sub.colour_term == pytest.approx(-TRUTH["V"]["c"], abs=0.01)


def test_colour_term_held_without_colours_or_colour_range() -> None:
    n = night("V", seed=7, frames=20)
    no_colour = fit_extinction(n.frame, n.airmass, n.inst, n.err, n.ref)
    assert not no_colour.colour_fitted and no_colour.colour_term == 0.0
    assert "colour term held at 0" in no_colour.reason
    held = fit(n, colour_term=0.05)
    assert not held.colour_fitted and held.colour_term == 0.05
    assert np.isnan(held.colour_term_err)
    # The right colour term held: the extinction is right too.
    assert held.k == pytest.approx(TRUTH["V"]["k"], abs=0.01)


def test_frames_with_too_few_stars_get_no_zero_point() -> None:
    n = night("V", seed=8, frames=10, stars=20)
    sparse = ~((n.frame == 0) & (np.arange(n.frame.size) % 20 >= 2))  # frame 0: 2 stars
    result = fit_extinction(
        n.frame[sparse], n.airmass[sparse], n.inst[sparse], n.err[sparse], n.ref[sparse],
        colour=n.colour[sparse],
    )  # fmt: skip
    assert np.isnan(result.frames.zero_point[0]) and result.n_frames == 9
    with pytest.raises(ValueError, match="no frame has"):
        fit_extinction([1, 1], [1.0, 1.0], [10.0, 11.0], [0.01, 0.01], [12.0, 13.0])
    with pytest.raises(ValueError, match="lengths differ"):
        fit_extinction([1], [1.0, 1.0], [10.0], [0.01], [12.0])


def test_frames_at_one_airmass_are_judged_but_give_no_extinction() -> None:
    n = night("V", seed=10, frames=10)
    result = fit_extinction(
        n.frame, np.full(n.frame.size, 1.3), n.inst, n.err, n.ref, colour=n.colour
    )  # the generator's airmass varies: the zero points scatter by k * 0.5 at most
    assert result.mode == "differential" and np.isnan(result.k)
    assert "airmass spans 0.00" in result.reason
    assert np.isfinite(result.frame_rms)
