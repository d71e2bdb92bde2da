"""Light-curve building blocks on tiny synthetic data with known truth."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from aiohttp import web
from astropy.table import Table

from obsctl.config import CommandSinkConfig, WebhookSinkConfig
from obsctl.timeseries.alerts import Alert, baseline, brightness_change, transit_dip
from obsctl.timeseries.differential import choose_comparisons, differential_photometry
from obsctl.timeseries.export import plot_light_curve, write_light_curve
from obsctl.timeseries.matching import match_positions
from obsctl.timeseries.sinks import deliver_alert
from obsctl.timeseries.stats import find_period, stetson_j, variability_stats


def test_matching_is_one_to_one_within_the_radius() -> None:
    ref_ra, ref_dec = np.array([10.0, 10.01]), np.array([20.0, 20.0])
    ra = np.array([10.0 + 0.5 / 3600, 10.0 + 1.0 / 3600, 10.01, 10.02, np.nan])
    dec = np.array([20.0, 20.0, 20.0 + 3 / 3600, 20.0, 20.0])
    out = match_positions(ra, dec, ref_ra, ref_dec, radius_arcsec=2.0)
    assert out.tolist() == [0, -1, -1, -1, -1]  # the nearer claim wins; 3" is too far


def test_ensemble_recovers_frame_offsets_and_drops_a_variable_comparison() -> None:
    rng = np.random.default_rng(3)
    frames, stars = 60, 12
    true = np.linspace(12.0, 14.0, stars)
    offsets = rng.normal(0.0, 0.1, frames)  # clouds, airmass
    err = np.tile(0.002 * 10 ** (0.2 * (true - 12.0)), (frames, 1))
    inst = true[None, :] + offsets[:, None] + rng.normal(size=(frames, stars)) * err
    inst[:, 3] += 0.05 * np.sin(np.arange(frames))  # a variable among the candidates
    usable = np.ones_like(inst, dtype=bool)
    comps = choose_comparisons(inst, err, usable, exclude=np.array([0]))
    assert 0 not in comps
    result = differential_photometry(inst, err, usable, comps, ref_mag=true)
    assert result.weights[3] == 0.0 and result.weights[0] == 0.0
    target = result.mag[:, 0]
    assert np.std(target) == pytest.approx(np.sqrt(np.mean(result.mag_err[:, 0] ** 2)), rel=0.25)
    assert np.mean(target) == pytest.approx(12.0, abs=0.003)


def test_variability_statistics_separate_noise_from_signal() -> None:
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0, 20, 300))
    err = np.full(t.size, 0.01)
    flat = 12 + rng.normal(0, 0.01, t.size)
    wave = flat + 0.05 * np.sin(2 * np.pi * t / 1.234)
    quiet, loud = variability_stats(t, flat, err), variability_stats(t, wave, err)
    assert quiet.chi2_red == pytest.approx(1.0, abs=0.2) and abs(quiet.stetson_j) < 0.3
    assert loud.chi2_red > 10 and loud.stetson_j > 1
    assert quiet.wscatter_mag == pytest.approx(0.01, rel=0.15)
    best = find_period(t, wave, err)
    assert best.period_d == pytest.approx(1.234, rel=1e-3)
    assert best.amplitude_mag == pytest.approx(0.05, rel=0.05)
    assert np.isnan(stetson_j([1.0], [1.0], [1.0]))
    with pytest.raises(ValueError, match="too few"):
        find_period(t[:3], wave[:3], err[:3])


def test_alert_rules() -> None:
    base = baseline(np.full(20, 12.0) + np.tile([0.01, -0.01], 10), np.full(20, 0.01))
    assert base is not None and base.mag == pytest.approx(12.0, abs=0.011)
    kind = brightness_change(11.5, 0.01, base, threshold_mag=0.3, sigma=5)
    assert kind is not None and kind[0] == "brighten"
    assert brightness_change(12.1, 0.01, base, threshold_mag=0.3, sigma=5) is None
    night = np.array([12.0, 12.0, 12.02, 12.02, 12.02, 12.02])
    assert transit_dip(night, np.full(6, 0.003), base, min_points=3, depth_mag=0.005, sigma=4)
    assert transit_dip(night[:3], np.full(3, 0.003), base, min_points=3, depth_mag=0.005,
                       sigma=4) is None  # fmt: skip


POINTS = [
    {"mjd": 61000.1 + k / 50, "bjd_tdb": 2461000.6 + k / 50, "mag": 12.0 + 0.01 * k,
     "mag_err": 0.005, "filter": "V" if k % 2 else "R", "flag": 2 if k == 3 else 0,
     "airmass": 1.2, "exposure_id": k + 1, "quality": "good"}
    for k in range(8)
]  # fmt: skip


def test_exports_open_in_astropy_and_follow_aavso(tmp_path) -> None:
    write_light_curve("V1", POINTS, "ecsv", tmp_path / "v1.ecsv")
    table = Table.read(tmp_path / "v1.ecsv")
    assert len(table) == 8 and table["mag"].unit == "mag" and table.meta["target"] == "V1"
    write_light_curve("V1", POINTS, "csv", tmp_path / "v1.csv")
    assert len(Table.read(tmp_path / "v1.csv", format="ascii.csv")) == 8
    text = write_light_curve("V1", POINTS, "aavso")
    lines = text.splitlines()
    assert lines[0] == "#TYPE=EXTENDED" and "#DATE=BJD" in lines
    rows = [line.split(",") for line in lines if not line.startswith("#")]
    assert len(rows) == 8 and all(len(r) == 15 for r in rows)
    assert rows[0][1] == "2461000.600000" and rows[3][-1] == "flag=2"
    with pytest.raises(ValueError, match="unknown format"):
        write_light_curve("V1", POINTS, "xls")
    plot_light_curve("V1", POINTS, tmp_path / "v1.png", period_d=0.1)
    assert (tmp_path / "v1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


ALERT = Alert("fade", "F", "V1", 1, 2, 61000.2, 12.5, 0.5, 9.0, "V1 faded", "fade:1:61000")


async def test_sinks_deliver_to_a_webhook_and_a_command(tmp_path) -> None:
    received: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    out = tmp_path / "alert.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    try:
        results = await deliver_alert(
            ALERT,
            [
                WebhookSinkConfig(kind="webhook", url=f"http://127.0.0.1:{port}/hook"),
                CommandSinkConfig(kind="command", command=(sys.executable, "-c", script)),
                CommandSinkConfig(kind="command", command=(sys.executable, "-c", "exit(3)")),
            ],
        )
    finally:
        await runner.cleanup()
    assert received == [ALERT.to_dict()]
    assert json.loads(out.read_text())["dedup_key"] == "fade:1:61000"
    assert results[0].endswith("ok") and results[1].endswith("ok") and "exit status 3" in results[2]


def test_bjd_tdb_offline_has_the_light_travel_time_of_the_earth_orbit() -> None:
    from astropy.coordinates import GeocentricTrueEcliptic, SkyCoord

    from obsctl.timeseries.times import bjd_tdb

    mjd = 61000.0 + np.arange(0.0, 366.0, 2.0)  # 2025-2026, past the bundled IERS tables
    bjd = bjd_tdb(mjd, 150.0, 20.0, latitude_deg=30.0, longitude_deg=-110.0, elevation_m=2000)
    offset_s = (bjd - 2400000.5 - mjd) * 86400.0
    beta = SkyCoord(150.0, 20.0, unit="deg").transform_to(GeocentricTrueEcliptic()).lat.rad
    # 499 s (1 au) times cos(ecliptic latitude), about the TT-UTC offset of 69.184 s; the
    # orbit's eccentricity (0.0167) adds a few seconds.
    half_range = 0.5 * (offset_s.max() - offset_s.min())
    assert half_range == pytest.approx(499.0 * np.cos(beta), abs=10.0)
    assert 0.5 * (offset_s.max() + offset_s.min()) == pytest.approx(69.184, abs=10.0)
