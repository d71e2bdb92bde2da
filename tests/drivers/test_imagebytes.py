import struct

import numpy as np
import orjson
import pytest

from obsctl.drivers.alpaca.imagebytes import (
    decode_imagebytes,
    decode_json_imagearray,
    encode_imagebytes,
    parse_header,
)
from obsctl.errors import DeviceBusyError, ImageDownloadError


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 65536, size=(6, 9), dtype=np.uint16)  # 6 rows (y), 9 columns (x)


def test_roundtrip_keeps_orientation(image: np.ndarray) -> None:
    body = encode_imagebytes(image, client_transaction_id=7, server_transaction_id=9)
    header = parse_header(body[:44])
    assert (header.dimension1, header.dimension2) == (9, 6)  # Dimension1 is the width
    assert (header.client_transaction_id, header.server_transaction_id) == (7, 9)
    assert header.transmission_element_type == 8 and header.image_element_type == 2
    out = decode_imagebytes(body)
    assert out.dtype == np.uint16 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, image)


def test_wire_order_is_x_major(image: np.ndarray) -> None:
    body = encode_imagebytes(image)
    wire = np.frombuffer(body[44:], "<u2")
    # The first NumY values are column x = 0 from top to bottom.
    np.testing.assert_array_equal(wire[:6], image[:, 0])


def test_int32_transmission_narrows_when_max_adu_fits() -> None:
    data = np.arange(12, dtype=np.int32).reshape(3, 4) * 1000
    body = encode_imagebytes(data)
    assert decode_imagebytes(body, max_adu=65535).dtype == np.uint16
    assert decode_imagebytes(body).dtype == np.int32
    wide = data + 70000
    out = decode_imagebytes(encode_imagebytes(wide), max_adu=65535)
    assert out.dtype == np.int32  # values exceed 16 bits whatever MaxADU claims
    np.testing.assert_array_equal(out, wide)


def test_rank3_decodes_planes_last() -> None:
    rgb = np.arange(2 * 3 * 3, dtype="<i4").reshape(3, 2, 3)  # transmitted [x, y, plane]
    header = struct.pack("<11i", 1, 0, 0, 0, 44, 2, 2, 3, 3, 2, 3)
    out = decode_imagebytes(header + rgb.tobytes(), max_adu=65535)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[1, 2], rgb[2, 1])


def test_truncated_body_is_reported(image: np.ndarray) -> None:
    body = encode_imagebytes(image)
    with pytest.raises(ImageDownloadError, match="header announces 108"):
        decode_imagebytes(body[:-10])


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ((2, 0, 0, 0, 44, 2, 8, 2, 9, 6, 0), "metadata version 2"),
        ((1, 0, 0, 0, 12, 2, 8, 2, 9, 6, 0), "DataStart 12"),
        ((1, 0, 0, 0, 44, 2, 42, 2, 9, 6, 0), "element type 42"),
        ((1, 0, 0, 0, 44, 2, 8, 4, 9, 6, 0), "rank 4"),
        ((1, 0, 0, 0, 44, 2, 8, 2, 0, 6, 0), "dimensions"),
    ],
)
def test_inconsistent_header_is_reported(fields, pattern) -> None:
    with pytest.raises(ImageDownloadError, match=pattern):
        decode_imagebytes(struct.pack("<11i", *fields) + b"\0" * 108)


def test_short_header() -> None:
    with pytest.raises(ImageDownloadError, match="header has 10 bytes"):
        decode_imagebytes(b"\1" * 10)


def test_error_reply_becomes_typed_error() -> None:
    header = struct.pack("<11i", 1, 0x40B, 3, 4, 44, 0, 0, 0, 0, 0, 0)
    with pytest.raises(DeviceBusyError, match="0x40B: no image ready") as info:
        decode_imagebytes(header + b"no image ready", device="cam")
    assert info.value.ascom_error == 0x40B and info.value.device == "cam"


def test_json_imagearray_is_x_major(image: np.ndarray) -> None:
    body = orjson.dumps(
        {
            "Type": 2,
            "Rank": 2,
            "Value": image.T.astype(int).tolist(),
            "ErrorNumber": 0,
            "ErrorMessage": "",
            "ClientTransactionID": 1,
            "ServerTransactionID": 2,
        }
    )
    out = decode_json_imagearray(body, max_adu=65535)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, image)


def test_json_rank_mismatch() -> None:
    body = orjson.dumps({"Type": 2, "Rank": 3, "Value": [[1, 2], [3, 4]], "ErrorNumber": 0})
    with pytest.raises(ImageDownloadError, match="Rank 3"):
        decode_json_imagearray(body)


def test_json_error_reply() -> None:
    body = orjson.dumps({"ErrorNumber": 0x40B, "ErrorMessage": "not ready", "Value": None})
    with pytest.raises(DeviceBusyError, match="not ready"):
        decode_json_imagearray(body)
