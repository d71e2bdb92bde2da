"""Display images of frames, made once and shared: a small cache with in-flight sharing.

A frame's block-mean image is the expensive part (reading 61 MP); the PNG of a stretch is
cheap from it. Both are kept for the last few frames. Each new frame's preview is made ahead
at one size (`PREVIEW_SIZE_PX`) that no request changes. Requests for a preview being made
wait for it rather than making it again: the page asks for a new frame's preview the moment
its ``processed`` event arrives, which is the moment the server starts making it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from obsctl.processing.display import (
    STRETCHES,
    Stretch,
    block_factor,
    block_mean,
    display_limits,
    encode_png,
    render,
)
from obsctl.web.frames import FrameFileError, open_image, to_physical

__all__ = ["PREVIEW_SIZE_PX", "Binned", "PreviewCache", "Tile", "bin_frame", "bin_region"]

log = logging.getLogger(__name__)

#: The longest side of the preview made ahead for each new frame (display pixels): what the
#: page asks for unless its viewer is larger.
PREVIEW_SIZE_PX = 1024

_V = TypeVar("_V")


@dataclass(frozen=True)
class Binned:
    """A frame reduced to display size.

    Attributes
    ----------
    data : numpy.ndarray
        float32 block means in physical units, FITS row order, shape
        ``(ny // factor, nx // factor)``.
    factor : int
        Block size (frame pixels per display pixel).
    frame_shape : tuple of int
        ``(ny, nx)`` of the frame.
    limits : dict
        Display scale per stretch, ``(low, high, softening)`` (the whole frame's, shared by
        its zoomed tiles).
    seconds : float
        Time it took to make (read, average, limits).
    """

    data: NDArray[np.float32]
    factor: int
    frame_shape: tuple[int, int]
    limits: dict[str, tuple[float, float, float]]
    seconds: float


@dataclass(frozen=True)
class Tile:
    """A rendered part of a frame: PNG bytes and the frame pixels it covers.

    ``x0, y0`` is the first frame pixel covered (0-based), ``x1, y1`` one past the last.
    """

    png: bytes
    factor: int
    x0: int
    y0: int
    x1: int
    y1: int


def bin_frame(path: Path, size_px: int) -> Binned:
    """Read a frame and block-average it so that its longer side fits ``size_px``.

    Raises
    ------
    FrameFileError
        When the file is missing, unreadable, truncated or holds no 2-D image.
    """
    start = time.perf_counter()
    with open_image(path) as image:
        shape = (int(image.data.shape[0]), int(image.data.shape[1]))
        factor = block_factor(shape, size_px)
        data = to_physical(block_mean(image.data, factor), image.bscale, image.bzero)
    limits = {str(s): display_limits(data, s) for s in STRETCHES}
    return Binned(data, factor, shape, limits, time.perf_counter() - start)


def bin_region(
    path: Path,
    box: tuple[int, int, int, int],
    size_px: int,
    stretch: Stretch,
    scale: tuple[float, float, float],
) -> Tile:
    """Render the part ``box = (x0, y0, x1, y1)`` of a frame at up to ``size_px`` per side.

    The box is clipped to the frame; ``scale`` (see
    `obsctl.processing.display.display_limits`) is the whole frame's, so tiles match the
    overview.

    Raises
    ------
    FrameFileError
        When the file is missing, unreadable, truncated or holds no 2-D image.
    ValueError
        When the box lies outside the frame.
    """
    with open_image(path) as image:
        ny, nx = image.data.shape
        x0, y0 = max(0, box[0]), max(0, box[1])
        x1, y1 = min(nx, box[2]), min(ny, box[3])
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"region {box} lies outside the {nx}x{ny} frame")
        factor = block_factor((y1 - y0, x1 - x0), size_px)
        x1 = x0 + max(1, (x1 - x0) // factor) * factor
        y1 = y0 + max(1, (y1 - y0) // factor) * factor
        if x1 > nx or y1 > ny:  # a box smaller than one block: take one block inside
            x0, y0 = max(0, min(x0, nx - factor)), max(0, min(y0, ny - factor))
            x1, y1 = x0 + factor, y0 + factor
        part = block_mean(image.data[y0:y1, x0:x1], factor)
        part = to_physical(part, image.bscale, image.bzero)
    return Tile(encode_png(render(part, stretch, scale)), factor, x0, y0, x1, y1)


class _Recent(OrderedDict[tuple[Any, ...], _V]):
    """A mapping that keeps its ``size`` most recently stored or read items."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_recent(self, key: tuple[Any, ...]) -> _V | None:
        """Return the item of ``key`` (marking it recently used), or None."""
        if key not in self:
            return None
        self.move_to_end(key)
        return self[key]

    def put(self, key: tuple[Any, ...], value: _V) -> None:
        """Store an item, forgetting the least recently used ones beyond ``size``."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class PreviewCache:
    """Block-mean images and PNGs of recent frames, made in a thread, shared while made.

    Previews at the size made ahead for every new frame (``size_px``) are kept apart from
    those at any other size: a client asking for unusual sizes can fill only its own part of
    the cache, never push out what is prepared for everyone.

    Parameters
    ----------
    size_px : int
        The size made ahead for each new frame (`make_ahead`), in every stretch, and served
        when a request names no size.
    items : int
        Frames kept in each part of the cache.
    """

    def __init__(self, *, size_px: int = PREVIEW_SIZE_PX, items: int = 6) -> None:
        self.size_px = size_px
        self._binned: dict[bool, _Recent[Binned]] = {True: _Recent(items), False: _Recent(items)}
        self._png: dict[bool, _Recent[bytes]] = {
            True: _Recent(2 * items),
            False: _Recent(2 * items),
        }
        self._making: dict[tuple[Any, ...], asyncio.Future[Binned]] = {}

    @staticmethod
    def _key(exposure_id: int, path: Path, size_px: int) -> tuple[Any, ...]:
        # The modification time: a frame processed again gets a new preview.
        return (exposure_id, str(path), path.stat().st_mtime_ns, size_px)

    async def binned(self, exposure_id: int, path: Path, size_px: int) -> Binned:
        """Return the frame reduced to ``size_px``, making it (once) when not cached.

        Raises
        ------
        FrameFileError
            When the file is missing, unreadable, truncated or holds no image.
        """
        try:
            key = self._key(exposure_id, path, size_px)
        except FileNotFoundError as exc:
            raise FrameFileError(path, "the file is not on disk", missing=True) from exc
        cache = self._binned[size_px == self.size_px]
        made = cache.get_recent(key)
        if made is not None:
            return made
        future = self._making.get(key)
        if future is None:
            future = asyncio.ensure_future(asyncio.to_thread(bin_frame, path, size_px))
            self._making[key] = future
            future.add_done_callback(lambda f: self._made(key, cache, f))
        return await asyncio.shield(future)

    def _made(
        self, key: tuple[Any, ...], cache: _Recent[Binned], future: asyncio.Future[Binned]
    ) -> None:
        self._making.pop(key, None)
        if future.cancelled() or future.exception() is not None:
            return
        cache.put(key, future.result())

    async def png(
        self, exposure_id: int, path: Path, size_px: int, stretch: Stretch
    ) -> tuple[bytes, Binned]:
        """Return the PNG of a frame at ``size_px`` in a stretch, and its binned image.

        Raises
        ------
        FrameFileError
            When the file is missing, unreadable, truncated or holds no image.
        """
        binned = await self.binned(exposure_id, path, size_px)
        key = (*self._key(exposure_id, path, size_px), stretch)
        cache = self._png[size_px == self.size_px]
        blob = cache.get_recent(key)
        if blob is None:
            blob = await asyncio.to_thread(
                lambda: encode_png(render(binned.data, stretch, binned.limits[stretch]))
            )
            cache.put(key, blob)
        return blob, binned

    async def make_ahead(self, exposure_id: int, path: Path) -> None:
        """Make a new frame's preview at `size_px` in every stretch, before the page asks.

        Raises
        ------
        FrameFileError
            When the file is missing, unreadable, truncated or holds no image.
        """
        for stretch in STRETCHES:
            await self.png(exposure_id, path, self.size_px, stretch)

    def has_png(self, exposure_id: int, path: Path, size_px: int, stretch: Stretch) -> bool:
        """Return whether the PNG of a frame at a size and stretch is made and kept."""
        key = (*self._key(exposure_id, path, size_px), stretch)
        return key in self._png[size_px == self.size_px]
