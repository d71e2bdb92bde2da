"""The simulated Alpaca server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import aiohttp
import numpy as np
import pytest

from obsctl.clock import ScaledClock
from obsctl.config import (
    SimulatedCameraConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.simulators import RunningSimulators, running_simulators

SITE = SiteConfig(name="Test site", latitude_deg=48.0, longitude_deg=11.0, elevation_m=500.0)
TELESCOPE = TelescopeConfig(focal_length_mm=800.0, aperture_mm=200.0)
IMAGEBYTES = {"Accept": "application/imagebytes"}


@contextlib.asynccontextmanager
async def served(
    speed: float = 1000.0, sky: SimulatedSkyConfig | None = None, **camera: Any
) -> AsyncIterator[tuple[RunningSimulators, aiohttp.ClientSession]]:
    camera = {"width_px": 128, "height_px": 96} | camera
    sim = SimulatorConfig(
        port=0,
        discovery_port=None,
        camera=SimulatedCameraConfig(**camera),
        sky=sky or SimulatedSkyConfig(),
    )
    async with (
        running_simulators(sim, SITE, TELESCOPE, clock=ScaledClock(speed)) as running,
        aiohttp.ClientSession(
            base_url=running.url, timeout=aiohttp.ClientTimeout(total=20)
        ) as session,
    ):
        yield running, session


async def get(session: aiohttp.ClientSession, path: str, **params: Any) -> dict[str, Any]:
    async with session.get(path, params=params) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def put(session: aiohttp.ClientSession, path: str, **form: Any) -> dict[str, Any]:
    data = {k: str(v) for k, v in form.items()}
    async with session.put(path, data=data) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def expose(session: aiohttp.ClientSession, duration_s: float = 1.0) -> None:
    await put(session, "/api/v1/camera/0/connected", Connected=True)
    reply = await put(session, "/api/v1/camera/0/startexposure", Duration=duration_s, Light=True)
    assert reply["ErrorNumber"] == 0, reply
    async with asyncio.timeout(10):
        while not (await get(session, "/api/v1/camera/0/imageready"))["Value"]:
            await asyncio.sleep(0.005)


def decode_imagebytes(body: bytes) -> tuple[tuple[int, ...], np.ndarray]:
    header = struct.unpack("<11i", body[:44])
    nx, ny = header[8], header[9]
    pixels = np.frombuffer(body[44:], "<u2").reshape(nx, ny).T
    return header, pixels


async def test_management_endpoints() -> None:
    async with served() as (_running, session):
        assert (await get(session, "/management/apiversions"))["Value"] == [1]
        description = (await get(session, "/management/v1/description"))["Value"]
        assert set(description) == {"ServerName", "Manufacturer", "ManufacturerVersion", "Location"}
        assert description["Location"] == "Test site"
        devices = (await get(session, "/management/v1/configureddevices"))["Value"]
        assert {d["DeviceType"] for d in devices} == {
            "Camera",
            "FilterWheel",
            "Telescope",
            "SafetyMonitor",
        }
        for d in devices:
            assert set(d) == {"DeviceName", "DeviceType", "DeviceNumber", "UniqueID"}
            assert d["DeviceNumber"] == 0
        assert len({d["UniqueID"] for d in devices}) == 4
        for path in ("/setup", "/setup/v1/camera/0/setup"):
            async with session.get(path) as response:
                assert response.status == 200
                assert "text/html" in response.headers["Content-Type"]


async def test_transaction_ids_echoed_and_increasing() -> None:
    async with served() as (_running, session):
        first = await get(session, "/api/v1/camera/0/name", ClientID=1, ClientTransactionID=123)
        assert first["ClientTransactionID"] == 123
        assert first["ErrorNumber"] == 0 and first["ErrorMessage"] == ""
        missing = await get(session, "/api/v1/filterwheel/0/name")
        invalid = await get(session, "/api/v1/telescope/0/name", ClientTransactionID="abc")
        negative = await get(session, "/api/v1/telescope/0/name", ClientTransactionID=-4)
        assert missing["ClientTransactionID"] == 0
        assert invalid["ClientTransactionID"] == 0
        assert negative["ClientTransactionID"] == 0
        put_reply = await put(
            session, "/api/v1/camera/0/connected", Connected=True, ClientTransactionID=9
        )
        assert put_reply["ClientTransactionID"] == 9
        assert "Value" not in put_reply
        ids = [r["ServerTransactionID"] for r in (first, missing, invalid, negative, put_reply)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_get_query_keys_are_case_insensitive() -> None:
    async with served() as (_running, session):
        reply = await get(session, "/api/v1/camera/0/name", clienttransactionid=77)
        assert reply["ClientTransactionID"] == 77
        reply = await get(session, "/api/v1/CAMERA/0/Name", CLIENTTRANSACTIONID=78)
        assert reply["ClientTransactionID"] == 78
        await put(session, "/api/v1/telescope/0/connected", Connected=True)
        reply = await get(
            session, "/api/v1/telescope/0/destinationsideofpier", rightascension=1, DECLINATION=10
        )
        assert reply["ErrorNumber"] == 0 and reply["Value"] in (0, 1)


async def test_put_form_keys_are_case_sensitive() -> None:
    async with served() as (_running, session):
        async with session.put("/api/v1/camera/0/connected", data={"connected": "True"}) as r:
            assert r.status == 400
            assert "Connected" in await r.text()
        async with session.put("/api/v1/camera/0/connected", data={}) as r:
            assert r.status == 400
        assert (await get(session, "/api/v1/camera/0/connected"))["Value"] is False
        await put(session, "/api/v1/camera/0/connected", Connected="true")
        assert (await get(session, "/api/v1/camera/0/connected"))["Value"] is True


async def test_unparseable_values_are_400() -> None:
    async with served() as (_running, session):
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        for form in ({"Duration": "abc", "Light": "True"}, {"Duration": "1", "Light": "maybe"}):
            async with session.put("/api/v1/camera/0/startexposure", data=form) as r:
                assert r.status == 400
        async with session.put("/api/v1/camera/0/binx", data={"BinX": "1.5"}) as r:
            assert r.status == 400
            assert "BinX" in await r.text()


async def test_unknown_paths_are_404_and_wrong_method_405() -> None:
    async with served() as (_running, session):
        for path in (
            "/api/v1/camera/1/name",
            "/api/v1/dome/0/name",
            "/api/v1/camera/x/name",
            "/api/v1/camera/0/nosuchmember",
        ):
            async with session.get(path) as r:
                assert r.status == 404, path
        async with session.get("/api/v1/camera/0/startexposure") as r:
            assert r.status == 405
        async with session.put("/api/v1/camera/0/cameraxsize", data={}) as r:
            assert r.status == 405


async def test_device_errors_are_200_with_error_numbers() -> None:
    async with served() as (_running, session):
        reply = await put(session, "/api/v1/camera/0/startexposure", Duration=1, Light=True)
        assert reply["ErrorNumber"] == 0x407
        assert (await get(session, "/api/v1/camera/0/cameraxsize"))["ErrorNumber"] == 0x407
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        reply = await put(session, "/api/v1/camera/0/startexposure", Duration=-1, Light=True)
        assert reply["ErrorNumber"] == 0x401 and reply["ErrorMessage"]
        reply = await get(session, "/api/v1/camera/0/imagearray")
        assert reply["ErrorNumber"] == 0x40B
        reply = await get(session, "/api/v1/camera/0/gains")
        assert reply["ErrorNumber"] == 0x400
        reply = await put(session, "/api/v1/camera/0/action", Action="x", Parameters="")
        assert reply["ErrorNumber"] == 0x400
        async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/imagebytes")
            body = await r.read()
        header = struct.unpack("<11i", body[:44])
        assert header[0] == 1 and header[1] == 0x40B and header[4] == 44
        assert header[5:] == (0, 0, 0, 0, 0, 0)
        assert body[44:].decode() == "no image is ready"


async def test_common_members_and_devicestate() -> None:
    async with served() as (_running, session):
        versions = {"camera": 4, "filterwheel": 3, "telescope": 4, "safetymonitor": 3}
        for device, version in versions.items():
            base = f"/api/v1/{device}/0"
            assert (await get(session, f"{base}/interfaceversion"))["Value"] == version
            assert (await get(session, f"{base}/supportedactions"))["Value"] == []
            assert (await get(session, f"{base}/connecting"))["Value"] is False
            for member in ("description", "driverinfo", "driverversion", "name"):
                assert isinstance((await get(session, f"{base}/{member}"))["Value"], str)
            await put(session, f"{base}/connect")
            assert (await get(session, f"{base}/connected"))["Value"] is True
            state = (await get(session, f"{base}/devicestate"))["Value"]
            names = [item["Name"] for item in state]
            assert "TimeStamp" in names
            await put(session, f"{base}/disconnect")
            assert (await get(session, f"{base}/connected"))["Value"] is False


async def test_imagebytes_matches_model_image() -> None:
    async with served() as (running, session):
        await expose(session)
        async with session.get(
            "/api/v1/camera/0/imagearray", headers=IMAGEBYTES, params={"ClientTransactionID": 5}
        ) as r:
            assert r.headers["Content-Type"].startswith("application/imagebytes")
            assert int(r.headers["Content-Length"]) == 44 + 128 * 96 * 2
            body = await r.read()
        header, pixels = decode_imagebytes(body)
        assert header[:8] == (1, 0, 5, header[3], 44, 2, 8, 2)
        assert header[8:] == (128, 96, 0)
        np.testing.assert_array_equal(pixels, running.observatory.camera.image)


async def test_json_imagearray_matches_model_image() -> None:
    async with served() as (running, session):
        await expose(session)
        reply = await get(session, "/api/v1/camera/0/imagearray", ClientTransactionID=6)
        assert reply["Type"] == 2 and reply["Rank"] == 2
        assert reply["ClientTransactionID"] == 6 and reply["ErrorNumber"] == 0
        value = np.asarray(reply["Value"])
        assert value.shape == (128, 96)  # [x][y]
        np.testing.assert_array_equal(value.T, running.observatory.camera.image)


async def test_subframe_and_binning_over_http() -> None:
    async with served() as (running, session):
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        for key, value in (("BinX", 2), ("BinY", 2), ("NumX", 64), ("NumY", 48)):
            reply = await put(session, f"/api/v1/camera/0/{key.lower()}", **{key: value})
            assert reply["ErrorNumber"] == 0
        await put(session, "/api/v1/camera/0/startx", StartX=10)
        reply = await put(session, "/api/v1/camera/0/startexposure", Duration=1, Light=True)
        assert reply["ErrorNumber"] == 0x401  # 10 + 64 > 128 / 2
        await put(session, "/api/v1/camera/0/startx", StartX=0)
        await expose(session)
        async with session.get("/api/v1/camera/0/imagearray", headers=IMAGEBYTES) as r:
            header, pixels = decode_imagebytes(await r.read())
        assert header[8:10] == (64, 48)
        np.testing.assert_array_equal(pixels, running.observatory.camera.image)


async def test_camera_properties() -> None:
    async with served() as (_running, session):
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        expected = {
            "cameraxsize": 128,
            "cameraysize": 96,
            "sensortype": 0,
            "readoutmodes": ["Normal", "Fast"],
            "canabortexposure": True,
            "canstopexposure": True,
            "canpulseguide": False,
            "maxadu": 65535,
            "camerastate": 0,
        }
        for member, value in expected.items():
            assert (await get(session, f"/api/v1/camera/0/{member}"))["Value"] == value
        assert (await get(session, "/api/v1/camera/0/lastexposureduration"))["ErrorNumber"] == (
            0x402
        )
        await put(session, "/api/v1/camera/0/gain", Gain=200)
        epadu = (await get(session, "/api/v1/camera/0/electronsperadu"))["Value"]
        assert epadu == pytest.approx(0.08)
        await expose(session, 2.0)
        assert (await get(session, "/api/v1/camera/0/lastexposureduration"))["Value"] == 2.0
        start = (await get(session, "/api/v1/camera/0/lastexposurestarttime"))["Value"]
        assert len(start) == 27 and start[10] == "T" and start[19] == "."


async def test_telescope_slew_over_http() -> None:
    async with served() as (running, session):
        base = "/api/v1/telescope/0"
        await put(session, f"{base}/connected", Connected=True)
        await put(session, f"{base}/tracking", Tracking=True)
        lst_h = (await get(session, f"{base}/siderealtime"))["Value"]
        target_ra_h = (lst_h + 1.0) % 24.0
        reply = await put(
            session, f"{base}/slewtocoordinatesasync", RightAscension=target_ra_h, Declination=45
        )
        assert reply["ErrorNumber"] == 0
        assert (await get(session, f"{base}/slewing"))["Value"] is True
        async with asyncio.timeout(5):
            while (await get(session, f"{base}/slewing"))["Value"]:
                await asyncio.sleep(0.005)
        ra = (await get(session, f"{base}/rightascension"))["Value"]
        dec = (await get(session, f"{base}/declination"))["Value"]
        assert ra == pytest.approx(target_ra_h, abs=1e-6)
        assert dec == pytest.approx(45.0)
        assert (await get(session, f"{base}/targetrightascension"))["Value"] == pytest.approx(
            target_ra_h
        )
        assert (await get(session, f"{base}/sideofpier"))["Value"] == 1  # HA < 0: pierWest
        assert (await get(session, f"{base}/equatorialsystem"))["Value"] == 2
        assert (await get(session, f"{base}/aperturediameter"))["Value"] == pytest.approx(0.2)
        await put(session, f"{base}/park")
        async with asyncio.timeout(5):
            while not (await get(session, f"{base}/atpark"))["Value"]:
                await asyncio.sleep(0.005)
        reply = await put(
            session, f"{base}/slewtocoordinatesasync", RightAscension=target_ra_h, Declination=45
        )
        assert reply["ErrorNumber"] == 0x408
        assert running.observatory.mount.tracking is False


async def test_filterwheel_and_safety_over_http() -> None:
    async with served() as (running, session):
        await put(session, "/api/v1/filterwheel/0/connected", Connected=True)
        names = (await get(session, "/api/v1/filterwheel/0/names"))["Value"]
        assert names == ["L", "B", "V", "R", "I"]
        assert (await put(session, "/api/v1/filterwheel/0/position", Position=9))[
            "ErrorNumber"
        ] == 0x401
        await put(session, "/api/v1/filterwheel/0/position", Position=2)
        async with asyncio.timeout(5):
            while (await get(session, "/api/v1/filterwheel/0/position"))["Value"] != 2:
                await asyncio.sleep(0.005)
        # Disconnected: IsSafe is False, not an error.
        assert (await get(session, "/api/v1/safetymonitor/0/issafe"))["Value"] is False
        await put(session, "/api/v1/safetymonitor/0/connected", Connected=True)
        assert (await get(session, "/api/v1/safetymonitor/0/issafe"))["Value"] is True
        async with session.put("/sim/v1/safetymonitor/0/safe", json={"safe": False}) as r:
            assert r.status == 200
        assert (await get(session, "/api/v1/safetymonitor/0/issafe"))["Value"] is False
        assert running.observatory.safety_monitor.is_safe is False


async def test_flat_panel_and_truth_control() -> None:
    # 512 px: enough sky that the truth list is never empty, whatever the sidereal time.
    async with served(width_px=512, height_px=512) as (running, session):
        async with session.put("/sim/v1/camera/0/flatpanel", json={"on": True}) as r:
            assert r.status == 200
        assert running.observatory.camera.flat_panel_on is True
        async with session.put("/sim/v1/camera/0/flatpanel", json={"on": "yes"}) as r:
            assert r.status == 400
        await put(session, "/api/v1/telescope/0/connected", Connected=True)
        await put(session, "/api/v1/telescope/0/tracking", Tracking=True)
        lst_h = (await get(session, "/api/v1/telescope/0/siderealtime"))["Value"]
        await put(
            session,
            "/api/v1/telescope/0/slewtocoordinates",
            RightAscension=lst_h,
            Declination=50,
        )
        async with session.put("/sim/v1/camera/0/flatpanel", json={"on": False}) as r:
            assert r.status == 200
        await expose(session, 30.0)
        async with session.get("/sim/v1/camera/0/truth") as r:
            reply = await r.json()
        truth = running.observatory.camera.last_truth
        assert truth is not None
        stars = reply["stars"]
        assert len(stars) == len(truth.stars) > 0
        assert reply["cosmic_count"] == truth.cosmic_count
        for star in stars:
            assert set(star) >= {"id", "ra_deg", "dec_deg", "mag", "x", "y", "flux_e"}


async def test_other_devices_answer_during_large_json_download() -> None:
    async with served(width_px=2000, height_px=1500) as (running, session):
        await expose(session)
        await put(session, "/api/v1/telescope/0/connected", Connected=True)

        async def download() -> np.ndarray:
            reply = await get(session, "/api/v1/camera/0/imagearray")
            return np.asarray(reply["Value"], dtype=np.uint16)

        task = asyncio.create_task(download())
        answered = 0
        while not task.done():
            reply = await get(session, "/api/v1/telescope/0/slewing")
            assert reply["ErrorNumber"] == 0
            answered += 1
            await asyncio.sleep(0)
        value = await task
        assert answered >= 1
        np.testing.assert_array_equal(value.T, running.observatory.camera.image)


@pytest.mark.parametrize(
    ("pattern", "offsets"),
    [("RGGB", (0, 0)), ("GRBG", (1, 0)), ("GBRG", (0, 1)), ("BGGR", (1, 1))],
)
async def test_bayer_camera_says_so_as_ascom_does(pattern, offsets) -> None:
    async with served(bayer_pattern=pattern) as (_running, session):
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        assert (await get(session, "/api/v1/camera/0/sensortype"))["Value"] == 2  # RGGB
        assert (await get(session, "/api/v1/camera/0/bayeroffsetx"))["Value"] == offsets[0]
        assert (await get(session, "/api/v1/camera/0/bayeroffsety"))["Value"] == offsets[1]


async def test_monochrome_camera_has_no_bayer_offsets() -> None:
    async with served() as (_running, session):
        await put(session, "/api/v1/camera/0/connected", Connected=True)
        for member in ("bayeroffsetx", "bayeroffsety"):
            assert (await get(session, f"/api/v1/camera/0/{member}"))["ErrorNumber"] == 0x400


async def test_truth_has_galaxies_trail_sky_and_bad_columns() -> None:
    # A trail in every exposure (3600 an hour, 30 s) and the default galaxies and columns.
    sky = SimulatedSkyConfig(satellite_rate_per_hour=3600.0)
    async with served(width_px=512, height_px=512, sky=sky, hot_columns=3) as (running, session):
        await put(session, "/api/v1/telescope/0/connected", Connected=True)
        await put(session, "/api/v1/telescope/0/tracking", Tracking=True)
        lst_h = (await get(session, "/api/v1/telescope/0/siderealtime"))["Value"]
        await put(
            session, "/api/v1/telescope/0/slewtocoordinates", RightAscension=lst_h, Declination=50
        )
        await expose(session, 30.0)
        async with session.get("/sim/v1/camera/0/truth") as r:
            reply = await r.json()
    truth = running.observatory.camera.last_truth
    assert truth is not None and truth.trail is not None and truth.sky is not None
    assert len(reply["galaxies"]) == len(truth.galaxies) > 0
    for galaxy, row in zip(reply["galaxies"], truth.galaxies, strict=True):
        assert galaxy["id"] == row["id"]
        assert galaxy["x"] == pytest.approx(row["x"])
        assert galaxy["flux_e"] == pytest.approx(row["flux_e"])
        assert set(galaxy) >= {"ra_deg", "dec_deg", "mag", "r_eff_px", "sersic_n", "pa_deg"}
    assert reply["trail"] == pytest.approx(asdict(truth.trail))
    assert reply["sky"] == asdict(truth.sky)
    assert reply["sky"]["airmass"] == pytest.approx(truth.sky.airmass)
    assert reply["saturated_px"] == truth.saturated_px
    assert [c["x"] for c in reply["bad_columns"]] == truth.bad_columns["x"].tolist()
    assert {c["kind"] for c in reply["bad_columns"]} <= {"dead", "hot"}
    assert len(reply["bad_columns"]) == len(truth.bad_columns) >= 3


async def test_truth_is_empty_before_an_exposure() -> None:
    async with served() as (_running, session), session.get("/sim/v1/camera/0/truth") as r:
        reply = await r.json()
    assert reply["stars"] == reply["galaxies"] == reply["bad_columns"] == []
    assert reply["trail"] is None and reply["sky"] is None
