"""`obsctl catalog fetch`, the overflow split, the requeue, and a frame calibrated from it.

Everything runs against the local TAP replay server (tests/catalogs/tap_replay.py). The
frame is rendered by the camera simulator from the synthetic sky the recorded Gaia answer
was built from (`build_votables`): its truth is the scene's zero point (V, e-/s) and the
recorded colour G - V = -0.3, and the stars' proper motions, which put the recorded
positions where the rendered stars are only at the frame's epoch.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from obsctl.catalogs import GaiaTap
from obsctl.catalogs.prefetch import (
    NO_REFERENCE_FLAG,
    Field,
    fetch_fields,
    prefetch_plan,
    start_prefetch,
)
from obsctl.cli import main
from obsctl.config import Config, load_config
from obsctl.devices import CameraImage, MountStatus, PierSide
from obsctl.night.plan import load_plan
from obsctl.pipeline.queue import ProcessingQueue
from obsctl.pipeline.runner import store_result
from obsctl.pipeline.stages import build_stages
from obsctl.pipeline.worker import process_file
from obsctl.simulators import scenes
from obsctl.simulators.render import render_exposure
from obsctl.simulators.sky import pixel_scale_arcsec
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import FrameContext
from obsctl.store.raw_store import RawStore
from obsctl.store.refcat import RefCatalog

from ..daemon_helpers import write_config
from . import build_votables as rec
from .tap_replay import tap_replay

SCENE_FIELD, SECOND_FIELD = rec.FIELDS
PIXEL_UM, FOCAL_MM, SIZE_PX = 3.76, 800.0, 256
SCENE_ZP = 22.0  # V magnitude giving 1 e-/s


def plan_file(tmp_path: Path, fields=rec.FIELDS) -> Path:
    targets = "".join(
        f'[[targets]]\nname = "{name}"\nra_deg = {ra}\ndec_deg = {dec}\n'
        '[[targets.steps]]\nfilter = "Lum"\nexposure_s = 60\ncount = 1\n'
        for name, ra, dec in fields
    )
    path = tmp_path / "plan.toml"
    path.write_text(f'version = 1\nname = "catalogue test"\n{targets}')
    return path


def config_file(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    body = f"""
[data]
directory = "{tmp_path / "data"}"
[pipeline]
workers = 1
stages = ["photometry", "astrometry", "zeropoint"]
reference_catalog = "file"
# The recorded catalogues relate G and V by a constant: no colour term to fit, whose noise
# would move the zero point (quoted at the stars' median colour) by a few thousandths.
fit_colour_term = false
[catalogs]
provider = "gaia"
gaia_url = "{base_url}/gaia/tap"
vizier_url = "{base_url}/vizier/tap"
margin_deg = 0.02
mag_limit = 18.0
timeout_s = 5
width_px = {SIZE_PX}
height_px = {SIZE_PX}
pixel_size_um = {PIXEL_UM}
{extra}
[catalogs.bands]
Lum = "G"
"""
    return write_config(tmp_path, body)


async def test_fetch_fills_every_field_of_a_plan_and_skips_covered_ones(tmp_path, capsys):
    async with tap_replay() as server:
        config = config_file(tmp_path, server.base_url)
        argv = ["--config", str(config), "catalog", "fetch", "--plan", str(plan_file(tmp_path))]
        assert await asyncio.to_thread(main, argv) == 0
        out = capsys.readouterr().out
        asked = len(server.requests)
        assert asked == 2  # one cone per target
        assert "Scene field: fetched from gaia" in out and "Second field: fetched" in out
        assert "2 field(s) fetched" in out and "0 already covered" in out

        assert await asyncio.to_thread(main, argv) == 0
        again = capsys.readouterr().out
        assert len(server.requests) == asked  # nothing asked the second time
        assert "Scene field: already in the catalogue (gaia), skipped" in again
        assert "0 field(s) fetched" in again and "2 already covered" in again

    # The camera's field: half the diagonal of 256 px of 3.76 um at 800 mm, plus the margin.
    radius = math.degrees(
        math.atan(0.5 * math.hypot(SIZE_PX, SIZE_PX) * PIXEL_UM * 1e-3 / FOCAL_MM)
    )
    with RefCatalog(DataDir(tmp_path / "data").catalog_path) as catalog:
        cones = catalog.cones("gaia")
        assert [(c["ra_deg"], c["dec_deg"]) for c in cones] == [f[1:] for f in rec.FIELDS]
        assert cones[0]["radius_deg"] == pytest.approx(radius + 0.02)
        for _, ra, dec in rec.FIELDS:
            stars = catalog.cone(ra, dec, radius, band="G")
            assert len(stars) > 50 and set(stars["catalog"]) == {b"gaia_dr3"}
            assert np.isfinite(stars["mag_v"]).all()  # synthetic V (or the DR3 relation)


async def test_an_overflowing_cone_is_split_and_still_complete(tmp_path):
    cone = Field("Scene field", SCENE_FIELD[1], SCENE_FIELD[2], 0.06)
    async with tap_replay() as server:
        whole = GaiaTap(url=server.url("gaia"), timeout_s=5)
        small = GaiaTap(url=server.url("gaia"), timeout_s=5, max_rows=40)
        with RefCatalog(tmp_path / "whole.sqlite") as a, RefCatalog(tmp_path / "split.sqlite") as b:
            one = await asyncio.to_thread(fetch_fields, a, whole, [cone], mag_limit=18.0)
            split = await asyncio.to_thread(fetch_fields, b, small, [cone], mag_limit=18.0)
            assert one.fetched == [cone] and split.fetched == [cone]
            assert len(server.requests) == 1 + 1 + 7  # the overflow, then seven half cones
            ids_a = set(a.cone(cone.ra_deg, cone.dec_deg, cone.radius_deg)["source_id"])
            ids_b = set(b.cone(cone.ra_deg, cone.dec_deg, cone.radius_deg)["source_id"])
            assert len(ids_a) > 40 and ids_b == ids_a
            assert b.covered("gaia", cone.ra_deg, cone.dec_deg, cone.radius_deg, 18.0)
        tiny = GaiaTap(url=server.url("gaia"), timeout_s=5, max_rows=2)
        with RefCatalog(tmp_path / "tiny.sqlite") as c:
            report = await asyncio.to_thread(fetch_fields, c, tiny, [cone], mag_limit=18.0)
    assert report.fetched == []
    ((_, reason),) = report.failed
    assert "still truncated after 2 splits" in reason and "mag_limit" in reason


async def test_an_unreachable_service_stops_the_fetch(tmp_path):
    fields = [Field(n, ra, dec, 0.05) for n, ra, dec in rec.FIELDS]
    async with tap_replay(stall_s=10) as server:
        stalling = GaiaTap(url=server.url("stalling"), timeout_s=0.3)
        with RefCatalog(tmp_path / "c.sqlite") as catalog:
            report = await asyncio.to_thread(fetch_fields, catalog, stalling, fields, mag_limit=17)
            assert catalog.cones() == []
    assert report.unreachable is not None and "no answer" in report.unreachable
    assert len(report.failed) == 1 and len(server.requests) == 1  # the second was not tried


def store_light(data_dir: Path, config: Config) -> tuple[int, Path]:
    """Render the scene field as the simulated camera would and store it as the daemon does."""
    chip = scenes.sensor(width_px=SIZE_PX, height_px=SIZE_PX, pixel_size_um=PIXEL_UM)
    spec = scenes.exposure(chip, exposure_s=60.0, seed=3)
    scene = scenes.sky(
        ra_deg=SCENE_FIELD[1], dec_deg=SCENE_FIELD[2],
        pixel_scale_arcsec=pixel_scale_arcsec(PIXEL_UM, FOCAL_MM), zero_point_mag=SCENE_ZP,
        seeing_arcsec=2.5, catalog_seed=rec.SKY["seed"],
        density_per_deg2=rec.SKY["density_per_deg2"], mag_bright=rec.SKY["mag_bright"],
        mag_limit=rec.SKY["mag_limit"],
    )  # fmt: skip
    image = render_exposure(chip, spec, scene).image
    start = datetime.fromisoformat(rec.FRAME_DATE_OBS).replace(tzinfo=UTC)
    mount = MountStatus(
        ra_deg=SCENE_FIELD[1] + 0.01, dec_deg=SCENE_FIELD[2] - 0.01, alt_deg=60.0, az_deg=180.0,
        slewing=False, tracking=True, at_park=False, pier_side=PierSide.WEST,
        sidereal_time_h=None,
    )  # fmt: skip
    ctx = FrameContext(
        image=CameraImage(data=image, metadata=scenes.image_metadata(spec, chip, start_time=start)),
        image_type="LIGHT", site=config.site, telescope=config.telescope, frame_number=1,
        start_time=start, target=SCENE_FIELD[0], filter_name="Lum", mount=mount,
    )  # fmt: skip
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    try:
        path, header = scenes.store_raw(RawStore(data_dir / "raw"), log_db, ctx)
        (row,) = log_db.exposures()
    finally:
        log_db.close()
    assert header["DATE-OBS"].startswith(rec.FRAME_DATE_OBS[:19])
    return int(row["id"]), path


def process(config: Config, data_dir: Path, exposure_id: int, path: Path):
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    try:
        queue = ProcessingQueue(log_db)
        (claimed,) = queue.claim(1)
        assert claimed == exposure_id
        result = process_file(
            str(path), exposure_id, stages=build_stages(config, data_dir), data_dir=data_dir
        )
        store_result(log_db, queue, result, DataDir(data_dir))
    finally:
        log_db.close()
    return result


async def test_a_frame_without_stars_is_requeued_and_calibrated_in_the_mapped_band(tmp_path):
    data_dir = tmp_path / "data"
    async with tap_replay() as server:
        config = load_config(config_file(tmp_path, server.base_url))
        eid, raw = await asyncio.to_thread(store_light, data_dir, config)
        log_db = ExposureLog(data_dir / "obsctl.sqlite")
        ProcessingQueue(log_db).enqueue(eid)
        log_db.close()

        # Processed before any catalogue: flagged, no zero point.
        first = await asyncio.to_thread(process, config, data_dir, eid, raw)
        assert any(NO_REFERENCE_FLAG in f for f in first.flags), first.flags
        assert "zero_point" not in first.metrics

        # The fetch brings the field and queues the frame again.
        plan = load_plan(plan_file(tmp_path, rec.FIELDS[:1]))
        report = await asyncio.to_thread(prefetch_plan, config, plan)
        assert report.fetched and report.requeued == 1
        log_db = ExposureLog(data_dir / "obsctl.sqlite")
        assert ProcessingQueue(log_db).counts() == {"queued": 1}
        log_db.close()

    second = await asyncio.to_thread(process, config, data_dir, eid, raw)
    assert not any("astrometry" in f for f in second.flags), second.flags
    # Proper motions applied: the recorded J2016 positions (moved by up to ~3 arcsec) land
    # on the rendered stars at the frame's epoch.
    assert second.metrics["wcs_rms_arcsec"] < 0.3
    assert second.metrics["wcs_matched"] >= 20
    from astropy.io import fits

    header = fits.getheader(second.calibrated_path)
    assert header["ZPBAND"] == "G" and header["ZPCAT"] == "gaia_dr3"

    # The same frame calibrated in V (synthetic Johnson V, the scene's own band) instead.
    in_v = config.model_copy(update={"catalogs": replace_bands(config, {"Lum": "V"})})
    log_db = ExposureLog(data_dir / "obsctl.sqlite")
    ProcessingQueue(log_db).enqueue(eid)
    log_db.close()
    third = await asyncio.to_thread(process, in_v, data_dir, eid, raw)
    zp_v, zp_g = third.metrics["zero_point"], second.metrics["zero_point"]
    # Truth: the scene's V zero point less the aperture loss (a few hundredths); the
    # recorded G is V - 0.3 for every star.
    assert SCENE_ZP - 0.15 < zp_v < SCENE_ZP
    assert zp_g - zp_v == pytest.approx(rec.G_MINUS_V, abs=0.005)


def replace_bands(config: Config, bands: dict[str, str]):
    return config.catalogs.model_copy(update={"bands": bands})


async def test_prefetch_starts_only_when_the_pipeline_reads_the_catalogue_file(tmp_path):
    async with tap_replay() as server:
        config = load_config(config_file(tmp_path, server.base_url))
        plan = load_plan(plan_file(tmp_path))

        class Host:
            pipeline = None

        host = Host()
        host.config = config  # type: ignore[attr-defined]
        task = start_prefetch(host, plan)
        assert task is not None
        report = await asyncio.wait_for(task, 30)
        assert report is not None and len(report.fetched) == 2

        sky = config.pipeline.model_copy(update={"reference_catalog": "synthetic"})
        synthetic = config.model_copy(update={"pipeline": sky})
        host.config = synthetic  # type: ignore[attr-defined]
        assert start_prefetch(host, plan) is None
        off = config.model_copy(
            update={"catalogs": config.catalogs.model_copy(update={"provider": "none"})}
        )
        host.config = off  # type: ignore[attr-defined]
        assert start_prefetch(host, plan) is None


async def test_the_nights_prefetch_hands_flagged_frames_to_the_running_pipeline(tmp_path):
    data_dir = tmp_path / "data"
    async with tap_replay() as server:
        config = load_config(config_file(tmp_path, server.base_url))
        eid, raw = await asyncio.to_thread(store_light, data_dir, config)
        log_db = ExposureLog(data_dir / "obsctl.sqlite")
        ProcessingQueue(log_db).enqueue(eid)
        log_db.close()
        first = await asyncio.to_thread(process, config, data_dir, eid, raw)
        assert any(NO_REFERENCE_FLAG in f for f in first.flags)

        loop = asyncio.get_running_loop()
        notified: list[tuple[int, bool]] = []

        class Pipeline:  # what the daemon's PipelineRunner offers: notify(), on the loop
            def notify(self, exposure_id: int) -> None:
                notified.append((exposure_id, asyncio.get_running_loop() is loop))

        class Host:
            pipeline = Pipeline()

        host = Host()
        host.config = config  # type: ignore[attr-defined]
        task = start_prefetch(host, load_plan(plan_file(tmp_path)))
        assert task is not None
        report = await asyncio.wait_for(task, 30)
        await asyncio.sleep(0)  # the notify scheduled from the fetch's thread
    assert report is not None and report.requeued == 1
    assert notified == [(eid, True)]


def test_fetch_without_a_provider_says_how_to_name_one(tmp_path, capsys):
    config = write_config(tmp_path, f'[data]\ndirectory = "{tmp_path / "data"}"\n')
    code = main(["--config", str(config), "catalog", "fetch", "--plan", str(plan_file(tmp_path))])
    err = capsys.readouterr().err
    assert code != 0
    assert "catalogs.provider: no catalogue provider" in err and "--provider" in err
    assert err.count("\n") == 1
