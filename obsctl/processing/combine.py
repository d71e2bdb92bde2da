"""Memory-bounded combination of a stack of frames into one (calibration masters).

The frames are never all in memory: they are read in tiles of whole rows, so at any time only
``tile_rows`` rows of every frame are held (``n_frames * tile_rows * width * 4`` bytes) besides
the output. Frames are anything that hands out row slices (numpy arrays, ``numpy.memmap``, a
reader over a memory-mapped FITS file), so a stack of dozens of 61 MP frames combines within a
few hundred megabytes.

Each tile is rearranged so that the frame axis is last and contiguous, in blocks of pixels small
enough to stay in cache, and sorted along it. A sorted pixel gives its median directly and makes
kappa-sigma clipping cheap: the values kept are always a contiguous run of the sorted ones, and
a pixel whose extreme values pass the first test (nearly all of them) needs no second pass. This
is several times faster than ``numpy.median`` or ``astropy.stats.sigma_clip`` along the first
axis of a stack, which walk the array with a stride of a whole frame.

Input values are assumed finite (raw frames are); NaN is not treated as missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CombineResult",
    "RowSource",
    "Subtract",
    "frame_levels",
    "median_combine",
    "sigma_clipped_mean",
]

# Pixels rearranged and sorted at a time: (block, n_frames) float32 stays within L2 cache.
_PIXEL_BLOCK = 16384


class RowSource(Protocol):
    """A two-dimensional frame that hands out row slices.

    ``numpy.ndarray`` and ``numpy.memmap`` qualify, and so does any reader whose
    ``source[r0:r1]`` returns rows ``r0`` to ``r1`` as an array (any real dtype and byte order).
    """

    @property
    def shape(self) -> tuple[int, ...]:
        """``(ny, nx)`` in pixels."""
        ...

    def __getitem__(self, key: slice, /) -> Any:
        """Return the rows selected by ``key``."""
        ...


#: What to subtract from each frame before scaling: one array for every frame, or a function
#: ``(frame index, row slice) -> rows to subtract`` (for example bias plus a dark scaled to each
#: frame's exposure time).
Subtract = NDArray[Any] | Callable[[int, slice], ArrayLike]


@dataclass(frozen=True, eq=False)
class CombineResult:
    """A combined frame.

    Attributes
    ----------
    data : numpy.ndarray of float32
        The combined frame, native byte order, C-contiguous, in the units of the (subtracted
        and scaled) inputs.
    count : numpy.ndarray of uint16
        Number of frames that went into each pixel (all of them for the median).
    std : numpy.ndarray of float32 or None
        Standard deviation of the values that went into each pixel (population, ``ddof=0``),
        in the units of the inputs; None unless asked for (always computed by the clipped
        mean, where it is free).
    rejected_fraction : float
        Fraction of all input values rejected by clipping (0 for the median).
    """

    data: NDArray[np.float32]
    count: NDArray[np.uint16]
    std: NDArray[np.float32] | None
    rejected_fraction: float


def _check_frames(frames: Sequence[RowSource]) -> tuple[int, int]:
    if len(frames) == 0:
        raise ValueError("need at least one frame to combine")
    if len(frames) > np.iinfo(np.uint16).max:
        raise ValueError(f"cannot combine more than 65535 frames (got {len(frames)})")
    shape = tuple(frames[0].shape)
    if len(shape) != 2:
        raise ValueError(f"frames must be two-dimensional, got shape {shape}")
    for i, f in enumerate(frames):
        if tuple(f.shape) != shape:
            raise ValueError(f"frame {i} has shape {tuple(f.shape)}, frame 0 has {shape}")
    return int(shape[0]), int(shape[1])


def _check_knobs(n: int, scale: Sequence[float] | None, tile_rows: int, threads: int) -> None:
    if scale is not None and len(scale) != n:
        raise ValueError(f"scale has {len(scale)} entries for {n} frames")
    if tile_rows < 1 or threads < 1:
        raise ValueError("tile_rows and threads must be >= 1")


def _load_rows(
    out: NDArray[np.float32],
    source: RowSource,
    index: int,
    rows: slice,
    subtract: Subtract | None,
    scale: float | None,
) -> None:
    """Read one frame's rows into ``out`` as float32, then subtract and scale in place."""
    np.copyto(out, source[rows], casting="unsafe")
    if subtract is not None:
        part = subtract(index, rows) if callable(subtract) else subtract[rows]
        np.subtract(out, part, out=out, casting="unsafe")
    if scale is not None and scale != 1.0:
        out *= np.float32(scale)


def _median_sorted(block: NDArray[np.float32]) -> NDArray[np.float32]:
    n = block.shape[1]
    if n % 2:
        return block[:, n // 2].copy()
    result: NDArray[np.float32] = block[:, n // 2 - 1] + block[:, n // 2]
    result *= np.float32(0.5)
    return result


def _median_block(
    block: NDArray[np.float32],
    out: NDArray[np.float32],
    count: NDArray[np.uint16],
    std: NDArray[np.float32] | None,
) -> int:
    out[:] = _median_sorted(block)
    count[:] = block.shape[1]
    if std is not None:
        std[:] = block.std(axis=1)
    return 0


def _row_sum(values: NDArray[np.float32]) -> NDArray[np.float32]:
    # einsum sums short rows several times faster than ndarray.sum(axis=1).
    result: NDArray[np.float32] = np.einsum("ij->i", values)
    return result


def _row_count(mask: NDArray[np.bool_]) -> NDArray[np.intp]:
    counts: NDArray[np.intp] = np.einsum("ij->i", mask.view(np.uint8), dtype=np.int32).astype(
        np.intp
    )
    return counts


def _kept_stats(
    block: NDArray[np.float32], lo: NDArray[np.intp], hi: NDArray[np.intp]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.intp]]:
    """Median, mean and standard deviation of the sorted values ``lo <= j < hi`` of each row."""
    rows = np.arange(block.shape[0])
    n_kept = hi - lo
    centre = block[rows, lo + (n_kept - 1) // 2] + block[rows, lo + n_kept // 2]
    centre *= np.float32(0.5)
    j = np.arange(block.shape[1])
    kept = (j >= lo[:, None]) & (j < hi[:, None])
    # Deviations from the median keep the sums small, so float32 loses nothing to cancellation.
    weight = n_kept.astype(np.float32)
    dev = block - centre[:, None]
    dev *= kept
    mean_dev = _row_sum(dev) / weight
    dev -= mean_dev[:, None]
    dev *= kept
    std: NDArray[np.float32] = np.sqrt(_row_sum(dev * dev) / weight)
    mean: NDArray[np.float32] = centre + mean_dev
    return centre, mean, std, n_kept


def _clip_bounds(
    block: NDArray[np.float32],
    centre: NDArray[np.float32],
    std: NDArray[np.float32],
    sigma: float,
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Return the kept run after clipping at ``centre +- sigma * std`` (values never come back)."""
    n = block.shape[1]
    reach = np.float32(sigma) * std
    below = _row_count(block < (centre - reach)[:, None])
    above = _row_count(block > (centre + reach)[:, None])
    return np.maximum(lo, below), np.minimum(hi, n - above)


def _sigma_block(
    block: NDArray[np.float32],
    out: NDArray[np.float32],
    count: NDArray[np.uint16],
    std_out: NDArray[np.float32] | None,
    sigma: float,
    max_iters: int,
) -> int:
    n = block.shape[1]
    centre = _median_sorted(block)
    dev = block - centre[:, None]
    mean_dev = _row_sum(dev) / np.float32(n)
    # Deviations from the median are small unless a pixel holds an outlier, and such a pixel
    # is recomputed exactly below, so the one-pass variance loses nothing that matters.
    var = np.einsum("ij,ij->i", dev, dev) / np.float32(n) - mean_dev * mean_dev
    std = np.sqrt(np.maximum(var, np.float32(0.0)))
    out[:] = centre + mean_dev
    count[:] = n
    if std_out is not None:
        std_out[:] = std
    if max_iters < 1:
        return 0
    # Sorted rows: only a pixel whose lowest or highest value lies beyond the bounds loses any.
    reach = np.float32(sigma) * std
    active = np.flatnonzero((block[:, 0] < centre - reach) | (block[:, -1] > centre + reach))
    if active.size == 0:
        return 0
    sub = block[active]
    lo, hi = _clip_bounds(
        sub,
        centre[active],
        std[active],
        sigma,
        np.zeros(active.size, np.intp),
        np.full(active.size, n, np.intp),
    )
    iteration = 1
    while active.size:
        c, mean, s, n_kept = _kept_stats(sub, lo, hi)
        out[active] = mean
        count[active] = n_kept
        if std_out is not None:
            std_out[active] = s
        if iteration >= max_iters:
            break
        iteration += 1
        new_lo, new_hi = _clip_bounds(sub, c, s, sigma, lo, hi)
        moved = (new_lo != lo) | (new_hi != hi)
        active, sub, lo, hi = active[moved], sub[moved], new_lo[moved], new_hi[moved]
    return int(n * count.size - count.sum(dtype=np.int64))


_Reducer = Callable[
    [NDArray[np.float32], NDArray[np.float32], NDArray[np.uint16], NDArray[np.float32] | None],
    int,
]


def _combine(
    frames: Sequence[RowSource],
    reducer: _Reducer,
    *,
    subtract: Subtract | None,
    scale: Sequence[float] | None,
    tile_rows: int,
    threads: int,
    want_std: bool,
) -> CombineResult:
    ny, nx = _check_frames(frames)
    n = len(frames)
    _check_knobs(n, scale, tile_rows, threads)
    tile_rows = min(tile_rows, ny)
    data = np.empty((ny, nx), dtype=np.float32)
    count = np.empty((ny, nx), dtype=np.uint16)
    std = np.empty((ny, nx), dtype=np.float32) if want_std else None
    stack = np.empty((n, tile_rows, nx), dtype=np.float32)
    rejected = 0

    def reduce_span(args: tuple[NDArray[np.float32], int, int, slice]) -> int:
        flat, p0, p1, rows = args
        out_data = data[rows].reshape(-1)
        out_count = count[rows].reshape(-1)
        out_std = None if std is None else std[rows].reshape(-1)
        lost = 0
        for b0 in range(p0, p1, _PIXEL_BLOCK):
            b1 = min(p1, b0 + _PIXEL_BLOCK)
            block = np.ascontiguousarray(flat[:, b0:b1].T)
            block.sort(axis=1)
            lost += reducer(
                block,
                out_data[b0:b1],
                out_count[b0:b1],
                None if out_std is None else out_std[b0:b1],
            )
        return lost

    # numpy releases the GIL while copying, converting and sorting, so threads share the work;
    # they split each tile rather than take tiles of their own, which keeps one tile in memory.
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for r0 in range(0, ny, tile_rows):
            r1 = min(ny, r0 + tile_rows)
            rows = slice(r0, r1)
            tile = stack[:, : r1 - r0]

            def load(i: int, tile: NDArray[np.float32] = tile, rows: slice = rows) -> None:
                _load_rows(
                    tile[i], frames[i], i, rows, subtract, None if scale is None else scale[i]
                )

            if pool is None:
                for i in range(n):
                    load(i)
            else:
                list(pool.map(load, range(n)))
            n_pixels = (r1 - r0) * nx
            flat = tile.reshape(n, n_pixels)  # a view: rows of one frame are contiguous
            if pool is None:
                rejected += reduce_span((flat, 0, n_pixels, rows))
                continue
            # Spans are whole pixel blocks so that threads never share a cache line of output.
            per = math.ceil(n_pixels / threads / _PIXEL_BLOCK) * _PIXEL_BLOCK
            spans = [(flat, p0, min(n_pixels, p0 + per), rows) for p0 in range(0, n_pixels, per)]
            rejected += sum(pool.map(reduce_span, spans))
    finally:
        if pool is not None:
            pool.shutdown()
    return CombineResult(
        data=data, count=count, std=std, rejected_fraction=rejected / (n * ny * nx)
    )


def median_combine(
    frames: Sequence[RowSource],
    *,
    subtract: Subtract | None = None,
    scale: Sequence[float] | None = None,
    tile_rows: int = 256,
    threads: int = 1,
    std: bool = False,
) -> CombineResult:
    """Combine frames by their per-pixel median.

    Parameters
    ----------
    frames : sequence of RowSource
        Two-dimensional frames of equal shape, any real dtype and byte order (ADU for raw
        frames). Only ``tile_rows`` rows of each are read at a time.
    subtract : numpy.ndarray or callable, optional
        Subtracted from each frame before scaling: an array of the frames' shape, or a
        function of ``(frame index, row slice)`` returning those rows (same units as the
        frames).
    scale : sequence of float, optional
        One factor per frame, applied after `subtract` (for example ``1 / level`` to
        normalise flats).
    tile_rows : int, optional
        Rows of every frame held in memory at once; peak memory is about
        ``len(frames) * tile_rows * width * 4`` bytes plus the output.
    threads : int, optional
        Threads sharing each tile (numpy releases the GIL while sorting).
    std : bool, optional
        Also return the per-pixel standard deviation (costs one more pass over each tile).

    Returns
    -------
    CombineResult
        The median (float32; the mean of the two middle values for an even count, as
        ``numpy.median``), ``count`` equal to the number of frames everywhere.

    Raises
    ------
    ValueError
        If there are no frames, their shapes differ or are not 2-D, or a knob is out of range.
    """
    return _combine(
        frames,
        _median_block,
        subtract=subtract,
        scale=scale,
        tile_rows=tile_rows,
        threads=threads,
        want_std=std,
    )


def sigma_clipped_mean(
    frames: Sequence[RowSource],
    *,
    sigma: float = 3.0,
    max_iters: int = 5,
    subtract: Subtract | None = None,
    scale: Sequence[float] | None = None,
    tile_rows: int = 256,
    threads: int = 1,
    std: bool = False,
) -> CombineResult:
    """Combine frames by an iterative kappa-sigma clipped mean around the median.

    Per pixel, as ``astropy.stats.sigma_clip(stack, axis=0, sigma=sigma, maxiters=max_iters)``
    followed by the mean: values outside ``median +- sigma * std`` of the values still kept are
    rejected, until nothing changes or `max_iters` clipping rounds have run; the mean of what
    is left is returned.

    Parameters
    ----------
    frames : sequence of RowSource
        Two-dimensional frames of equal shape, any real dtype and byte order (ADU for raw
        frames). Only ``tile_rows`` rows of each are read at a time.
    sigma : float, optional
        Clipping threshold in standard deviations (population ``std``, ``ddof=0``), > 0.
        With ``n`` frames a single outlier lies at most ``(n - 1) / sqrt(n)`` standard
        deviations from the mean, so with ``sigma=3`` it is only rejected from 11 frames on.
    max_iters : int, optional
        Largest number of clipping rounds; 0 gives the plain mean.
    subtract, scale, tile_rows, threads
        As for `median_combine`.
    std : bool, optional
        Return the per-pixel standard deviation of the kept values (no extra cost, only the
        memory of one more float32 frame).

    Returns
    -------
    CombineResult
        The clipped mean (float32), the number of values kept per pixel and the fraction
        rejected overall.

    Raises
    ------
    ValueError
        If there are no frames, their shapes differ or are not 2-D, or a knob is out of range.
    """
    if not sigma > 0 or max_iters < 0:
        raise ValueError("sigma must be > 0 and max_iters >= 0")

    def reducer(
        block: NDArray[np.float32],
        out: NDArray[np.float32],
        count: NDArray[np.uint16],
        std_out: NDArray[np.float32] | None,
    ) -> int:
        return _sigma_block(block, out, count, std_out, sigma, max_iters)

    return _combine(
        frames,
        reducer,
        subtract=subtract,
        scale=scale,
        tile_rows=tile_rows,
        threads=threads,
        want_std=std,
    )


def frame_levels(
    frames: Sequence[RowSource],
    *,
    subtract: Subtract | None = None,
    row_step: int = 8,
    col_step: int = 4,
) -> NDArray[np.float64]:
    """Return each frame's median level, estimated from a regular subsample of its pixels.

    Used to normalise flats before combining them. Reads one row in `row_step` (one at a
    time), so memory stays at one row per frame.

    Parameters
    ----------
    frames : sequence of RowSource
        Two-dimensional frames of equal shape.
    subtract : numpy.ndarray or callable, optional
        As in `median_combine`: removed from each frame before the level is measured.
    row_step, col_step : int, optional
        Sampling steps along y and x (pixels), >= 1. The default (1 pixel in 32) measures the
        median of a 4096x4096 frame to about 1e-5 of the level.

    Returns
    -------
    numpy.ndarray of float64
        The median of each frame's sampled pixels, in the frames' units.
    """
    ny, _nx = _check_frames(frames)
    if row_step < 1 or col_step < 1:
        raise ValueError("row_step and col_step must be >= 1")
    levels = np.empty(len(frames), dtype=np.float64)
    sample_rows = range(row_step // 2, ny, row_step)
    for i, source in enumerate(frames):
        samples = []
        for r in sample_rows:
            rows = slice(r, r + 1)
            values = np.asarray(source[rows], dtype=np.float32)
            if subtract is not None:
                part = subtract(i, rows) if callable(subtract) else subtract[rows]
                values = values - np.asarray(part, dtype=np.float32)
            samples.append(values[0, col_step // 2 :: col_step])
        levels[i] = float(np.median(np.concatenate(samples)))
    return levels
