"""Memory-bounded frame combination, checked against numpy and astropy on small seeded stacks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from astropy.stats import sigma_clip

from obsctl.processing.combine import frame_levels, median_combine, sigma_clipped_mean

NY, NX = 67, 53  # odd sizes so that no tile or pixel block divides them evenly


class RecordingRows:
    """A frame that remembers which rows were asked for (to check the tiling)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.requests: list[slice] = []

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __getitem__(self, key: slice) -> np.ndarray:
        self.requests.append(key)
        return self.data[key]


def noisy_stack(n: int, *, seed: int = 1, level: float = 1000.0, sigma: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    truth = level + 20.0 * np.sin(np.arange(NX) / 5.0)[None, :] + np.arange(NY)[:, None] * 0.1
    return (truth + rng.normal(0.0, sigma, (n, NY, NX))).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 7, 10])
@pytest.mark.parametrize("threads", [1, 2])
def test_median_equals_numpy(n: int, threads: int) -> None:
    stack = noisy_stack(n)
    result = median_combine(list(stack), tile_rows=10, threads=threads)
    assert result.data.dtype == np.float32 and result.data.flags.c_contiguous
    np.testing.assert_array_equal(result.data, np.median(stack, axis=0))
    assert np.all(result.count == n) and result.rejected_fraction == 0.0


def test_median_of_big_endian_uint16_frames() -> None:
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 65535, (6, NY, NX), dtype=np.uint16)
    frames = [f.astype(">u2") for f in stack]
    result = median_combine(frames, tile_rows=16, std=True)
    # Exact: half-integers up to 65535 are representable in float32.
    np.testing.assert_array_equal(result.data, np.median(stack, axis=0).astype(np.float32))
    assert result.std is not None
    np.testing.assert_allclose(result.std, stack.std(axis=0), rtol=1e-5)


def test_only_tiles_are_read() -> None:
    frames = [RecordingRows(f) for f in noisy_stack(5)]
    median_combine(frames, tile_rows=8)
    for f in frames:
        assert all(r.stop - r.start <= 8 for r in f.requests)
        covered = sorted((r.start, r.stop) for r in f.requests)
        assert covered[0][0] == 0 and covered[-1][1] == NY
        assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))


def test_sigma_clipping_rejects_cosmic_rays() -> None:
    n, noise = 15, 5.0
    stack = noisy_stack(n, sigma=noise, seed=3)
    clean_mean = stack.mean(axis=0)
    rng = np.random.default_rng(4)
    hits = rng.random(stack.shape) < 0.01
    stack[hits] += rng.uniform(300.0, 20000.0, int(hits.sum())).astype(np.float32)
    # Pixels struck once. (Two strong hits in 15 frames inflate the standard deviation so much
    # that neither lies beyond 3 sigma: a limit of mean/std clipping, astropy's too.)
    struck = hits.sum(axis=0) == 1

    result = sigma_clipped_mean(list(stack), sigma=3.0, tile_rows=9, threads=2, std=True)
    # There the clipped mean is the mean of the 14 frames not struck; where a clean 3-sigma
    # tail value is clipped as well, it moves by about 3 * noise / 14 = 1.1 ADU.
    unstruck_mean = np.ma.array(stack, mask=hits).mean(axis=0).filled(np.nan)
    err = np.abs(result.data - unstruck_mean)[struck]
    assert np.median(err) < 1e-3 and err.max() < 1.5
    plain = stack.mean(axis=0)
    assert np.abs(plain - clean_mean)[struck].min() > 15.0  # the hits do matter unclipped
    assert np.all(result.count[struck] <= n - 1)
    assert 0.009 < result.rejected_fraction < 0.02  # the hits plus a few 3-sigma tails


def test_sigma_clipping_matches_astropy() -> None:
    stack = noisy_stack(20, seed=5)
    rng = np.random.default_rng(6)
    hits = rng.random(stack.shape) < 0.02
    stack[hits] += rng.uniform(50.0, 5000.0, int(hits.sum())).astype(np.float32)
    stack[3, 10, 10] -= 400.0  # a low outlier too

    result = sigma_clipped_mean(list(stack), sigma=3.0, max_iters=5, tile_rows=16, std=True)
    clipped = sigma_clip(stack, axis=0, sigma=3.0, maxiters=5)
    # Same values kept; means agree to float32 rounding at the 1000 ADU level.
    np.testing.assert_array_equal(result.count, (~clipped.mask).sum(axis=0))
    np.testing.assert_allclose(result.data, clipped.mean(axis=0).filled(np.nan), atol=1e-3)
    assert result.std is not None
    np.testing.assert_allclose(result.std, clipped.std(axis=0).filled(np.nan), atol=1e-3)


def test_no_clipping_rounds_is_the_mean() -> None:
    stack = noisy_stack(8, seed=7)
    result = sigma_clipped_mean(list(stack), max_iters=0)
    np.testing.assert_allclose(result.data, stack.mean(axis=0), atol=1e-3)
    assert np.all(result.count == 8)


def test_subtract_and_scale_normalise_flats() -> None:
    rng = np.random.default_rng(8)
    pattern = (1.0 + 0.1 * rng.random((NY, NX))).astype(np.float32)
    bias = np.full((NY, NX), 500.0, np.float32) + rng.normal(0, 3, (NY, NX)).astype(np.float32)
    levels = np.array([8000.0, 12000.0, 20000.0, 15000.0, 10000.0])
    frames = [bias + level * pattern for level in levels]

    measured = frame_levels(frames, subtract=bias, row_step=2, col_step=2)
    np.testing.assert_allclose(measured / levels, measured[0] / levels[0], rtol=1e-5)
    result = median_combine(frames, subtract=bias, scale=list(1.0 / measured))
    master = result.data / np.median(result.data)
    np.testing.assert_allclose(master, pattern / np.median(pattern), rtol=1e-4)

    # The same with a per-frame subtraction (bias plus a dark scaled to each frame).
    dark = rng.random((NY, NX)).astype(np.float32) * 50.0
    ratios = [0.5, 1.0, 2.0, 1.5, 1.0]
    with_dark = [f + dark * r for f, r in zip(frames, ratios, strict=True)]

    def bias_and_dark(i: int, rows: slice) -> np.ndarray:
        return bias[rows] + dark[rows] * np.float32(ratios[i])

    result = sigma_clipped_mean(with_dark, subtract=bias_and_dark, scale=list(1.0 / levels))
    np.testing.assert_allclose(result.data, pattern, rtol=1e-4)


def test_frame_levels_close_to_full_median() -> None:
    stack = noisy_stack(3, seed=9)
    levels = frame_levels(list(stack))
    np.testing.assert_allclose(levels, np.median(stack.reshape(3, -1), axis=1), rtol=2e-3)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        median_combine([])
    with pytest.raises(ValueError, match="frame 1 has shape"):
        median_combine([np.zeros((4, 4)), np.zeros((4, 5))])
    with pytest.raises(ValueError, match="two-dimensional"):
        sigma_clipped_mean([np.zeros(4)])
    with pytest.raises(ValueError, match="scale has 1 entries for 2 frames"):
        median_combine([np.zeros((4, 4))] * 2, scale=[1.0])
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sigma_clipped_mean([np.zeros((4, 4))], sigma=0.0)
