"""Display images: block means, zscale and asinh limits, stretches and PNG encoding."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from astropy.visualization import AsinhStretch, ZScaleInterval

from obsctl.processing.display import (
    asinh_to_uint8,
    block_factor,
    block_mean,
    display_limits,
    encode_png,
    linear_to_uint8,
    percentile_limits,
    render,
    zscale_limits,
)


def sky(shape=(96, 128), seed=3) -> np.ndarray:
    """A flat 1000 ADU sky with 10 ADU noise and a few bright stars."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000.0, 10.0, shape).astype(np.float32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for x, y, peak in [(20, 30, 5000.0), (90, 60, 20000.0), (64, 10, 800.0)]:
        image += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return image


def decode_png(blob: bytes) -> np.ndarray:
    """A minimal PNG reader for what encode_png writes (8-bit, filter 0), checking CRCs."""
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(blob):
        (length,) = struct.unpack(">I", blob[pos : pos + 4])
        kind = blob[pos + 4 : pos + 8]
        body = blob[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = body
        pos += 12 + length
    nx, ny, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and b"IEND" in chunks
    channels = {0: 1, 2: 3}[colour]
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), dtype=np.uint8)
    rows = raw.reshape(ny, nx * channels + 1)
    assert (rows[:, 0] == 0).all()
    pixels = rows[:, 1:]
    return pixels.reshape(ny, nx) if channels == 1 else pixels.reshape(ny, nx, 3)


def test_block_factor_fits_the_frame_into_the_page() -> None:
    assert block_factor((6388, 9576), 1200) == 8
    assert 9576 // block_factor((6388, 9576), 1200) <= 1200
    assert block_factor((96, 128), 1024) == 1
    with pytest.raises(ValueError, match="max_size_px"):
        block_factor((10, 10), 0)


def test_block_mean_averages_blocks_and_drops_partial_ones() -> None:
    image = np.arange(7 * 10, dtype=np.uint16).reshape(7, 10)
    out = block_mean(image, 3)
    assert out.shape == (2, 3) and out.dtype == np.float32
    expected = image[:6, :9].reshape(2, 3, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # Big-endian float data, as astropy memory-maps a FITS file.
    big = sky().astype(">f4")
    np.testing.assert_allclose(
        block_mean(big, 4), sky().reshape(24, 4, 32, 4).mean(axis=(1, 3)), rtol=1e-5
    )
    assert block_mean(image, 1).shape == image.shape
    with pytest.raises(ValueError, match="2-D"):
        block_mean(np.zeros(5), 2)
    with pytest.raises(ValueError, match="smaller than one"):
        block_mean(np.zeros((2, 2)), 3)


def test_zscale_matches_astropy() -> None:
    image = sky()
    ours = zscale_limits(image)
    theirs = ZScaleInterval().get_limits(image)
    assert ours == pytest.approx(theirs, rel=1e-6)
    # The sky (1000 +- 10 ADU) sits inside the limits and the stars are cut off.
    assert 900 < ours[0] < 1000 < ours[1] < 1100
    assert zscale_limits(np.full((4, 4), np.nan)) == (0.0, 1.0)


def test_percentile_limits_ignore_nan() -> None:
    image = np.arange(10000, dtype=np.float64).reshape(100, 100)
    image[0, :10] = np.nan
    lo, hi = percentile_limits(image, low=1.0, high=99.0)
    assert lo == pytest.approx(109, abs=2) and hi == pytest.approx(9900, abs=2)


def test_stretches() -> None:
    ramp = np.linspace(-10.0, 110.0, 121, dtype=np.float32)[None, :]
    lin = linear_to_uint8(ramp, 0.0, 100.0)
    assert lin[0, 0] == 0 and lin[0, 10] == 0 and lin[0, 60] == 128 and lin[0, -1] == 255
    ash = asinh_to_uint8(ramp, 0.0, 100.0, softening=0.1)
    expected = AsinhStretch(a=0.1)(np.clip((ramp - 0.0) / 100.0, 0, 1)) * 255
    np.testing.assert_allclose(ash, np.round(expected), atol=1)
    # asinh lifts the faint end: 5 % of the range shows three times brighter than linear.
    assert 38 < ash[0, 15] < 44 and lin[0, 15] == 13
    nan = linear_to_uint8(np.array([[np.nan, 50.0]]), 0.0, 100.0)
    assert nan.tolist() == [[0, 128]]
    with pytest.raises(ValueError, match="softening"):
        asinh_to_uint8(ramp, 0, 1, softening=0)


def test_render_flips_rows_and_knows_its_stretches() -> None:
    image = sky()
    shown = render(image, "zscale")
    assert shown.shape == image.shape and shown.dtype == np.uint8
    # The brightest star is at FITS row 60: in a top-down PNG that is row 96 - 1 - 60.
    brightest = np.argmax(render(image, "asinh", (1000.0, 21000.0, 0.1)))
    assert np.unravel_index(brightest, shown.shape) == (35, 90)
    low, high, softening = display_limits(image, "asinh")
    assert low < 1000 and high > 5000  # the asinh top keeps bright stars apart
    assert 0 < softening < 0.01
    # The sky shows dark grey (about a quarter of full brightness), stars bright.
    shown = render(image, "asinh")
    assert 40 < np.median(shown) < 90 and shown.max() == 255
    assert display_limits(image, "zscale") == (*zscale_limits(image), 1.0)
    with pytest.raises(ValueError, match="unknown stretch"):
        display_limits(image, "log")  # type: ignore[arg-type]


def test_png_round_trips() -> None:
    gray = (np.arange(12 * 17) % 256).astype(np.uint8).reshape(12, 17)
    assert np.array_equal(decode_png(encode_png(gray)), gray)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=2)
    assert np.array_equal(decode_png(encode_png(rgb, level=6)), rgb)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(gray.astype(np.uint16))
    with pytest.raises(ValueError, match=r"\(ny, nx\)"):
        encode_png(np.zeros((2, 2, 4), dtype=np.uint8))
