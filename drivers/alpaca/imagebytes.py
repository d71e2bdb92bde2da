"""Alpaca image transfer: the ImageBytes binary format and the JSON ImageArray fallback.

ImageBytes (Alpaca API, "ImageBytes - Alpaca's high-speed image transfer mechanism") is a
44-byte little-endian header of eleven int32 values followed by the pixels::

    MetadataVersion, ErrorNumber, ClientTransactionID, ServerTransactionID, DataStart,
    ImageElementType, TransmissionElementType, Rank, Dimension1, Dimension2, Dimension3

The pixels are sent in the order of the .NET array ``[Dimension1, Dimension2(, Dimension3)]``,
i.e. x (Dimension1 = width) slowest and y fastest. An error reply carries a non-zero
ErrorNumber and a UTF-8 message after the header.

We read images ourselves rather than through alpyca because alpyca's download has no timeout,
holds a process-wide lock for its whole duration, crashes on an ImageBytes error reply and
decodes rank-3 images wrongly. The reader here streams into one preallocated buffer under a
deadline and checks every header field against the body.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import orjson
from numpy.typing import NDArray

from obsctl.drivers.alpaca._http import (
    AlpacaClient,
    ascom_number,
    error_for_ascom,
    raise_for_reply,
)
from obsctl.errors import DeviceConnectionError, DeviceTimeoutError, ImageDownloadError

__all__ = [
    "HEADER_SIZE",
    "ImageBytesHeader",
    "decode_imagebytes",
    "decode_json_imagearray",
    "download_image",
    "encode_imagebytes",
    "parse_header",
    "to_image",
]

log = logging.getLogger(__name__)

HEADER_SIZE = 44
_HEADER = struct.Struct("<11i")

# ImageArrayElementTypes: number -> little-endian numpy dtype.
ELEMENT_TYPES: dict[int, np.dtype[Any]] = {
    1: np.dtype("<i2"),  # Int16
    2: np.dtype("<i4"),  # Int32
    3: np.dtype("<f8"),  # Double
    4: np.dtype("<f4"),  # Single
    5: np.dtype("<u8"),  # UInt64
    6: np.dtype("u1"),  # Byte
    7: np.dtype("<i8"),  # Int64
    8: np.dtype("<u2"),  # UInt16
    9: np.dtype("<u4"),  # UInt32
}
_READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ImageBytesHeader:
    """The decoded ImageBytes header."""

    metadata_version: int
    error_number: int
    client_transaction_id: int
    server_transaction_id: int
    data_start: int
    image_element_type: int
    transmission_element_type: int
    rank: int
    dimension1: int
    dimension2: int
    dimension3: int

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape in transmission order, ``(dim1, dim2[, dim3])``."""
        if self.rank == 3:
            return (self.dimension1, self.dimension2, self.dimension3)
        return (self.dimension1, self.dimension2)

    @property
    def payload_size(self) -> int:
        """Bytes of pixel data the header announces."""
        return int(np.prod(self.shape)) * ELEMENT_TYPES[self.transmission_element_type].itemsize


def parse_header(raw: bytes, *, device: str = "camera") -> ImageBytesHeader:
    """Decode and validate an ImageBytes header.

    Parameters
    ----------
    raw : bytes
        At least the first 44 bytes of the reply.
    device : str
        Device name for error context.

    Returns
    -------
    ImageBytesHeader
        The header; an error reply (non-zero ErrorNumber) is returned, not raised, so that the
        caller can read its message.

    Raises
    ------
    ImageDownloadError
        When the header is short or inconsistent.
    """
    if len(raw) < HEADER_SIZE:
        raise ImageDownloadError(f"ImageBytes header has {len(raw)} bytes, need 44", device=device)
    header = ImageBytesHeader(*_HEADER.unpack_from(raw))
    if header.metadata_version != 1:
        raise ImageDownloadError(
            f"ImageBytes metadata version {header.metadata_version} is not supported (1)",
            device=device,
        )
    if header.data_start < HEADER_SIZE:
        raise ImageDownloadError(f"ImageBytes DataStart {header.data_start} < 44", device=device)
    if header.error_number:
        return header
    if header.transmission_element_type not in ELEMENT_TYPES:
        raise ImageDownloadError(
            f"ImageBytes transmission element type {header.transmission_element_type} unknown",
            device=device,
        )
    if header.rank not in (2, 3):
        raise ImageDownloadError(f"ImageBytes rank {header.rank} is not 2 or 3", device=device)
    if min(header.shape) <= 0:
        raise ImageDownloadError(f"ImageBytes dimensions {header.shape} invalid", device=device)
    return header


def to_image(transmitted: NDArray[Any], *, max_adu: int | None = None) -> NDArray[Any]:
    """Turn an array in Alpaca order ``[x, y(, plane)]`` into a C-contiguous ``[y, x(, plane)]``.

    Integer images whose values fit in 16 bits (``max_adu`` <= 65535, or uint16 on the
    wire) become ``uint16``; other integers become ``int32``; floats stay floats. The result is
    native-endian.

    Parameters
    ----------
    transmitted : numpy.ndarray
        Pixels indexed ``[x, y]`` or ``[x, y, plane]``.
    max_adu : int or None
        The camera's MaxADU, used to choose ``uint16`` for Int32 transmissions.

    Returns
    -------
    numpy.ndarray
        Pixels indexed ``[y, x]`` (or ``[y, x, plane]``).
    """
    axes = (1, 0, 2) if transmitted.ndim == 3 else (1, 0)
    view = transmitted.transpose(axes)
    kind = transmitted.dtype.kind
    if transmitted.dtype == np.dtype("<u2") or (
        kind in "iu" and max_adu is not None and max_adu <= 65535
    ):
        target: np.dtype[Any] = np.dtype(np.uint16)
    elif kind in "iu":
        target = np.dtype(np.int32)
    else:
        target = transmitted.dtype.newbyteorder("=")
    narrowing = target == np.dtype(np.uint16) and transmitted.dtype != np.dtype("<u2")
    if narrowing and view.size and (int(view.min()) < 0 or int(view.max()) > 65535):
        target = np.dtype(np.int32)  # MaxADU understated the data: keep every value
    return _transpose_copy(view, target)


# Rows of the x-major input copied per step of the blocked transpose: a strip of 128 columns
# of the output stays in cache while it is filled, which makes the copy ~5x faster than
# numpy's plain strided copy of the transposed view (0.07 s instead of 0.35 s for 61 MP).
_TRANSPOSE_BLOCK = 128


def _transpose_copy(view: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """Copy a transposed view into a new C-contiguous array of ``dtype``, in cache-sized strips.

    One pass does the transpose, byte order and (already range-checked) narrowing together.
    """
    out = np.empty(view.shape, dtype=dtype)
    width = view.shape[1]
    for x0 in range(0, width, _TRANSPOSE_BLOCK):
        x1 = min(width, x0 + _TRANSPOSE_BLOCK)
        out[:, x0:x1] = view[:, x0:x1]
    return out


def decode_imagebytes(
    body: bytes | bytearray | memoryview, *, device: str = "camera", max_adu: int | None = None
) -> NDArray[Any]:
    """Decode a complete ImageBytes reply into an image indexed ``[y, x]``.

    Parameters
    ----------
    body : bytes-like
        The whole reply body.
    device : str
        Device name for error context.
    max_adu : int or None
        The camera's MaxADU (see `to_image`).

    Returns
    -------
    numpy.ndarray
        The image.

    Raises
    ------
    ImageDownloadError
        When the reply is truncated, oversized or its header is inconsistent.
    DeviceError
        The typed ASCOM error when the reply is an error reply.
    """
    mv = memoryview(body)
    header = parse_header(bytes(mv[:HEADER_SIZE]), device=device)
    payload = mv[header.data_start :]
    if header.error_number:
        message = bytes(payload).decode("utf-8", "replace")
        number = ascom_number(header.error_number)
        raise error_for_ascom(number, message, device=device, member="imagearray")
    if len(payload) != header.payload_size:
        raise ImageDownloadError(
            f"ImageBytes body has {len(payload)} pixel bytes, header announces "
            f"{header.payload_size} for {header.shape}",
            device=device,
        )
    dtype = ELEMENT_TYPES[header.transmission_element_type]
    transmitted = np.frombuffer(payload, dtype=dtype).reshape(header.shape)
    return to_image(transmitted, max_adu=max_adu)


def encode_imagebytes(
    image: NDArray[Any],
    *,
    client_transaction_id: int = 0,
    server_transaction_id: int = 0,
) -> bytes:
    """Encode an image indexed ``[y, x]`` as an ImageBytes reply (used by tests and benches).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint16`` (sent as UInt16, element type Int32) or ``int32`` image, shape ``(ny, nx)``.
    client_transaction_id, server_transaction_id : int
        Transaction ids for the header.

    Returns
    -------
    bytes
        Header and pixels.
    """
    if image.ndim != 2:
        raise ValueError("encode_imagebytes takes a 2-D image")
    transmission = 8 if image.dtype == np.uint16 else 2
    wire = np.ascontiguousarray(image.T, dtype=ELEMENT_TYPES[transmission])
    ny, nx = image.shape
    header = _HEADER.pack(
        1,
        0,
        client_transaction_id,
        server_transaction_id,
        HEADER_SIZE,
        2,
        transmission,
        2,
        nx,
        ny,
        0,
    )
    return header + wire.tobytes()


def decode_json_imagearray(
    body: bytes, *, device: str = "camera", max_adu: int | None = None
) -> NDArray[Any]:
    """Decode a JSON ImageArray reply into an image indexed ``[y, x]``.

    As `decode_imagebytes`, for ``body`` a JSON reply.

    Raises
    ------
    ImageDownloadError
        When the JSON is malformed or its Rank disagrees with the array.
    DeviceError
        The typed ASCOM error the reply carries.
    """
    value = raise_for_reply(200, body, device=device, member="imagearray")
    try:
        reply = orjson.loads(body)
        rank = int(reply.get("Rank", 2))
        element_type = int(reply.get("Type", 2))
        dtype = np.dtype("<f8") if element_type in (3, 4) else np.dtype(np.int64)
        transmitted = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise ImageDownloadError(f"JSON ImageArray is malformed: {exc}", device=device) from exc
    if transmitted.ndim != rank or rank not in (2, 3) or transmitted.size == 0:
        raise ImageDownloadError(
            f"JSON ImageArray has shape {transmitted.shape} but Rank {rank}", device=device
        )
    return to_image(transmitted, max_adu=max_adu)


async def _read_body(resp: aiohttp.ClientResponse, *, device: str) -> bytearray:
    """Read a reply into one buffer sized from Content-Length (no doubling copies)."""
    length = resp.content_length
    if length is None:
        return bytearray(await resp.read())
    buf = bytearray(length)
    view = memoryview(buf)
    filled = 0
    while filled < length:
        chunk = await resp.content.read(min(_READ_CHUNK, length - filled))
        if not chunk:
            raise ImageDownloadError(
                f"image download truncated at {filled} of {length} bytes", device=device
            )
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return buf


async def download_image(
    client: AlpacaClient,
    number: int,
    *,
    device: str,
    timeout_s: float,
    max_adu: int | None = None,
    prefer_imagebytes: bool = True,
) -> NDArray[Any]:
    """Download the camera's ImageArray, by ImageBytes when the server offers it.

    Parameters
    ----------
    client : AlpacaClient
        The server's client.
    number : int
        Camera device number.
    device : str
        Device name for error context.
    timeout_s : float
        Deadline for the whole download in seconds.
    max_adu : int or None
        The camera's MaxADU (see `to_image`).
    prefer_imagebytes : bool
        Ask for ImageBytes (the server may still answer JSON, which is then decoded).

    Returns
    -------
    numpy.ndarray
        The image indexed ``[y, x]``, native-endian and C-contiguous.

    Raises
    ------
    DeviceTimeoutError
        When the download does not finish within ``timeout_s``.
    ImageDownloadError
        When the data is truncated, corrupted or undecodable.
    DeviceConnectionError
        When the connection fails before the image starts.
    DeviceError
        The typed ASCOM error the camera reported (for example no image ready).
    """
    url = client.device_url("camera", number, "imagearray")
    headers = {"Accept": "application/imagebytes"} if prefer_imagebytes else {}
    session = client.session()
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, params=client.ids(), headers=headers) as resp:
                if resp.status != 200:
                    raise_for_reply(
                        resp.status, await resp.read(), device=device, member="imagearray"
                    )
                body = await _read_body(resp, device=device)
                content_type = resp.headers.get("Content-Type", "")
    except TimeoutError as exc:
        raise DeviceTimeoutError(
            f"image download did not finish within {timeout_s:g} s", device=device
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise ImageDownloadError(f"image download broken: {exc}", device=device) from exc
    except aiohttp.ClientError as exc:
        raise DeviceConnectionError(
            f"imagearray: {type(exc).__name__}: {exc}", device=device
        ) from exc
    # Decoding a 61 MP frame (transpose, narrowing) takes a few hundred ms: keep it off the
    # event loop so that other devices are served meanwhile.
    if "application/imagebytes" in content_type:
        return await asyncio.to_thread(decode_imagebytes, body, device=device, max_adu=max_adu)
    return await asyncio.to_thread(
        decode_json_imagearray, bytes(body), device=device, max_adu=max_adu
    )
