"""`AlpacaCamera`: the `obsctl.devices.Camera` protocol over ASCOM Alpaca (ICameraV4)."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from obsctl.devices import (
    CameraImage,
    CameraInfo,
    CameraState,
    CameraStatus,
    ExposureSettings,
    ImageMetadata,
)
from obsctl.drivers.alpaca._device import AlpacaDevice
from obsctl.drivers.alpaca.imagebytes import download_image
from obsctl.errors import DeviceBusyError, DeviceNotImplementedError

__all__ = ["AlpacaCamera", "parse_ascom_time"]

log = logging.getLogger(__name__)


_ASCOM_TIME = re.compile(
    r"(?P<main>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?"
)


def parse_ascom_time(text: str) -> datetime:
    """Parse an ASCOM FITS-style time (``YYYY-MM-DDTHH:MM:SS[.fffffff]``) as UTC.

    ASCOM allows up to seven fractional digits, more than `datetime.fromisoformat` takes
    in every Python version, so the fraction is cut to microseconds. The spec's times are UTC
    without a zone; a ``Z`` or a UTC offset (``+01:00``, sent by some servers with local
    time) is honoured, so that the instant is right either way.

    Parameters
    ----------
    text : str
        The time string.

    Returns
    -------
    datetime
        A timezone-aware UTC datetime.

    Raises
    ------
    ValueError
        When the text is no such time.
    """
    match = _ASCOM_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an ASCOM time: {text!r}")
    frac = ((match["frac"] or "") + "000000")[:6]
    zone = match["zone"] or "Z"
    when = datetime.fromisoformat(f"{match['main']}.{frac}{'+00:00' if zone == 'Z' else zone}")
    return when.astimezone(UTC)


# ASCOM SensorType values this driver understands, and the 2 x 2 order (at the sensor's
# first pixel, as FITS BAYERPAT) of an RGGB sensor whose red pixel is at (BayerOffsetX,
# BayerOffsetY).
_SENSOR_MONOCHROME = 0
_SENSOR_RGGB = 2
_RGGB_AT_OFFSET: dict[tuple[int, int], str] = {
    (0, 0): "RGGB",
    (1, 0): "GRBG",
    (0, 1): "GBRG",
    (1, 1): "BGGR",
}


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(eq=False, repr=False, kw_only=True)
class AlpacaCamera(AlpacaDevice):
    """A camera on an Alpaca server.

    Parameters
    ----------
    name, client, device_number, timeout_s, connect_timeout_s
        See `AlpacaDevice`.
    download_timeout_s : float
        Deadline of one image download in seconds.
    prefer_imagebytes : bool
        Ask for ImageBytes; False forces the JSON ImageArray.
    """

    device_type = "camera"

    download_timeout_s: float = 120.0
    prefer_imagebytes: bool = True
    _info: CameraInfo | None = field(default=None, init=False)
    # The colour filter array (SensorType and BayerOffsetX/Y), read once per connection.
    _bayer: tuple[str | None] | None = field(default=None, init=False)
    # Alpaca does not report whether the last exposure was a light frame; we started it.
    _last_light: bool = field(default=True, init=False)

    async def info(self) -> CameraInfo:
        """Read the camera's fixed properties once and cache them."""
        if self._info is not None:
            return self._info
        required = (
            "sensorname", "cameraxsize", "cameraysize", "pixelsizex", "pixelsizey", "maxbinx",
            "maxbiny", "maxadu", "fullwellcapacity", "exposuremin", "exposuremax",
            "canabortexposure", "canstopexposure", "cansetccdtemperature",
        )  # fmt: skip
        optional = ("gainmin", "gainmax", "offsetmin", "offsetmax", "readoutmodes")
        v = await self._get_all(required, optional)
        self._info = CameraInfo(
            sensor_name=str(v["sensorname"]),
            width_px=int(v["cameraxsize"]),
            height_px=int(v["cameraysize"]),
            pixel_size_x_um=float(v["pixelsizex"]),
            pixel_size_y_um=float(v["pixelsizey"]),
            max_bin_x=int(v["maxbinx"]),
            max_bin_y=int(v["maxbiny"]),
            max_adu=int(v["maxadu"]),
            full_well_e=float(v["fullwellcapacity"]),
            exposure_min_s=float(v["exposuremin"]),
            exposure_max_s=float(v["exposuremax"]),
            gain_min=_int_or_none(v["gainmin"]),
            gain_max=_int_or_none(v["gainmax"]),
            offset_min=_int_or_none(v["offsetmin"]),
            offset_max=_int_or_none(v["offsetmax"]),
            readout_modes=tuple(str(m) for m in (v["readoutmodes"] or ("Default",))),
            can_abort=bool(v["canabortexposure"]),
            can_stop=bool(v["canstopexposure"]),
            can_set_temperature=bool(v["cansetccdtemperature"]),
        )
        return self._info

    async def connect(self) -> None:
        """Connect and forget cached properties (the camera may have changed)."""
        self._info = None
        self._bayer = None
        await super().connect()

    async def _bayer_pattern(self) -> str | None:
        """Return the sensor's Bayer pattern at its first pixel (None: monochrome), cached.

        ASCOM describes every 2 x 2 order as ``SensorType`` RGGB with ``BayerOffsetX/Y``
        giving the column and row of its red pixel. Other colour sensor types (CMYG, LRGB,
        or colour images already demosaiced) are read as no mosaic, with a warning.
        """
        if self._bayer is not None:
            return self._bayer[0]
        pattern: str | None = None
        sensor_type = (await self._get_all((), ("sensortype",)))["sensortype"]
        if sensor_type is not None and int(sensor_type) == _SENSOR_RGGB:
            v = await self._get_all(("bayeroffsetx", "bayeroffsety"))
            pattern = _RGGB_AT_OFFSET[(int(v["bayeroffsetx"]) % 2, int(v["bayeroffsety"]) % 2)]
        elif sensor_type is not None and int(sensor_type) != _SENSOR_MONOCHROME:
            log.warning(
                "%s: SensorType %d is not a Bayer RGGB mosaic; frames are treated as mono",
                self.name,
                int(sensor_type),
            )
        self._bayer = (pattern,)
        return pattern

    async def configure(self, settings: ExposureSettings) -> None:
        """Apply binning, subframe, gain, offset and readout mode.

        Binning is set first because ASCOM defines StartX/NumX in binned pixels.
        """
        info = await self.info()
        await self._put("binx", BinX=str(settings.bin_x))
        await self._put("biny", BinY=str(settings.bin_y))
        if settings.subframe is None:
            start_x, start_y = 0, 0
            num_x, num_y = info.width_px // settings.bin_x, info.height_px // settings.bin_y
        else:
            start_x, start_y, num_x, num_y = settings.subframe
        await asyncio.gather(
            self._put("startx", StartX=str(start_x)),
            self._put("starty", StartY=str(start_y)),
            self._put("numx", NumX=str(num_x)),
            self._put("numy", NumY=str(num_y)),
        )
        if settings.gain is not None:
            await self._put("gain", Gain=str(settings.gain))
        if settings.offset is not None:
            await self._put("offset", Offset=str(settings.offset))
        if settings.readout_mode is not None:
            await self._put("readoutmode", ReadoutMode=str(settings.readout_mode))

    async def start_exposure(self, exposure_s: float, *, light: bool = True) -> None:
        """Start an exposure (``StartExposure``) and return at once."""
        await self._put("startexposure", Duration=repr(float(exposure_s)), Light=str(light))
        self._last_light = light

    async def status(self) -> CameraStatus:
        """Read state, progress, readiness and cooler values concurrently."""
        info = await self.info()
        state, ready, temp, cooler, power = await asyncio.gather(
            self._get("camerastate"),
            self._get("imageready"),
            self._get_optional("ccdtemperature"),
            self._get_optional("cooleron"),
            self._get_optional("coolerpower"),
        )
        set_point = (
            await self._get_optional("setccdtemperature") if info.can_set_temperature else None
        )
        try:
            percent = float(await self._get("percentcompleted"))
        except DeviceBusyError:
            # ICameraV4 raises InvalidOperation when no exposure is running.
            percent = 100.0 if ready else 0.0
        return CameraStatus(
            state=CameraState(int(state)),
            percent_completed=percent,
            image_ready=bool(ready),
            ccd_temperature_c=_float_or_none(temp),
            set_temperature_c=_float_or_none(set_point),
            cooler_on=bool(cooler),
            cooler_power_pct=_float_or_none(power),
        )

    async def abort_exposure(self) -> None:
        """Abort and discard the running exposure (``AbortExposure``)."""
        await self._put("abortexposure")

    async def stop_exposure(self) -> None:
        """End the exposure early and keep the image (``StopExposure``)."""
        await self._put("stopexposure")

    async def set_cooler(self, *, on: bool, set_point_c: float | None = None) -> None:
        """Set the cooler's set point (if given) and switch it."""
        if set_point_c is not None:
            await self._put("setccdtemperature", SetCCDTemperature=repr(float(set_point_c)))
        await self._put("cooleron", CoolerOn=str(on))

    async def _metadata(self) -> ImageMetadata:
        info = await self.info()
        names = (
            "lastexposureduration", "lastexposurestarttime", "binx", "biny", "startx", "starty",
            "electronsperadu", "readoutmode",
        )  # fmt: skip
        optional = ("gain", "offset", "ccdtemperature", "setccdtemperature", "cooleron")
        v = await self._get_all(names, optional)
        try:
            start: datetime | None = parse_ascom_time(str(v["lastexposurestarttime"]))
        except ValueError:
            log.warning(
                "%s: unparseable LastExposureStartTime %r", self.name, v["lastexposurestarttime"]
            )
            start = None
        mode = int(v["readoutmode"])
        return ImageMetadata(
            exposure_s=float(v["lastexposureduration"]),
            start_time=start,
            light=self._last_light,
            bin_x=int(v["binx"]),
            bin_y=int(v["biny"]),
            start_x=int(v["startx"]),
            start_y=int(v["starty"]),
            gain=_int_or_none(v["gain"]),
            offset=_int_or_none(v["offset"]),
            electrons_per_adu=float(v["electronsperadu"]),
            ccd_temperature_c=_float_or_none(v["ccdtemperature"]),
            set_temperature_c=_float_or_none(v["setccdtemperature"]),
            cooler_on=bool(v["cooleron"]),
            pixel_size_x_um=info.pixel_size_x_um,
            pixel_size_y_um=info.pixel_size_y_um,
            readout_mode=info.readout_modes[mode] if mode < len(info.readout_modes) else str(mode),
            sensor_name=info.sensor_name,
            camera_name=self.name,
            bayer_pattern=await self._bayer_pattern(),
        )

    async def download(self) -> CameraImage:
        """Download the ready image by ImageBytes (JSON fallback) within ``download_timeout_s``.

        Raises the errors `obsctl.devices.Camera.download` lists.
        """
        if not await self._get("imageready"):
            raise DeviceBusyError("no image ready to download", device=self.name)
        metadata = await self._metadata()
        info = await self.info()
        data = await download_image(
            self.client,
            self.device_number,
            device=self.name,
            timeout_s=self.download_timeout_s,
            max_adu=info.max_adu,
            prefer_imagebytes=self.prefer_imagebytes,
        )
        if data.ndim != 2:
            raise DeviceNotImplementedError(
                f"colour (rank {data.ndim}) images are not supported yet", device=self.name
            )
        return CameraImage(data=data, metadata=metadata)
