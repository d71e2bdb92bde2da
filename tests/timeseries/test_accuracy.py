"""Light-curve accuracy on a simulated five-night monitoring run (see `timeseries_sky`).

Truth is the simulator's: the variables' true light curves (`VariableStar.mag`), the sky
level, read noise and gain it rendered with. Tolerances are the issue's: a constant star's
scatter within 1.2x of the CCD-equation noise, amplitude within 3 %, period within 0.1 %, a
1 % transit detected, the transient alerted on its first frame above the detection limit,
no alert on the constant star.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from obsctl.simulators.sky import synthetic_catalog
from obsctl.timeseries.stats import find_period
from obsctl.timeseries.store import list_alerts, list_light_curves, load_light_curve

from . import timeseries_sky as ts


@pytest.fixture(scope="module")
def monitoring_run(tmp_path_factory):
    result = ts.run(tmp_path_factory.mktemp("lc"))
    yield result
    result.db.close()


def moffat_within(radius_px: float, fwhm_px: float, beta: float = 3.0) -> float:
    """Fraction of a Moffat profile's flux inside a radius: 1 - (1 + (r / alpha)^2)^(1 - beta)."""
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return 1.0 - (1.0 + (radius_px / alpha) ** 2) ** (1.0 - beta)


def ccd_noise(mag_v: float, frame: dict[str, float]) -> float:
    """A star's magnitude error from the CCD equation and the simulator's truth alone.

    The star's electrons from its catalog magnitude and the zero point the frame was rendered
    with, the part of its Moffat profile inside the pipeline's aperture (analytic encircled
    energy), the true sky and read noise; the gain's digitisation noise is immaterial at
    1.5 e-/ADU.
    """
    star_e = moffat_within(frame["aperture_radius_px"], frame["seeing"] / ts.SCALE) * (
        ts.EXPOSURE_S * 10 ** (-0.4 * (mag_v - frame["zero_point_true"]))
    )
    npix = math.pi * frame["aperture_radius_px"] ** 2
    return 1.0857 * math.sqrt(star_e + npix * (frame["sky_e_px"] + ts.READ_NOISE_E**2)) / star_e


def comparison_magnitudes(db) -> np.ndarray:
    """True V magnitudes of the comparison stars the monitor chose (matched within 1")."""
    rows = db.query(
        "SELECT ra_deg, dec_deg FROM lc_objects WHERE field = ? AND comp_weight > 0", (ts.FIELD,)
    )
    sky = synthetic_catalog(
        ts.RA0, ts.DEC0, 0.2, seed=ts.SKY.seed, density_per_deg2=ts.SKY.star_density_per_deg2,
        mag_bright=ts.SKY.mag_bright, mag_limit=ts.SKY.mag_limit,
    )  # fmt: skip
    mags = []
    for row in rows:
        offset = np.hypot(
            (sky.ra_deg - row["ra_deg"]) * math.cos(math.radians(ts.DEC0)),
            sky.dec_deg - row["dec_deg"],
        )
        if offset.min() < 1.0 / 3600.0:
            mags.append(float(sky.mag_v[offset.argmin()]))
    return np.array(mags)


def arrays(points, *keys):
    return [np.array([p[k] for p in points], dtype=float) for k in keys]


def test_constant_star_scatter_matches_the_ccd_equation(monitoring_run) -> None:
    points = load_light_curve(monitoring_run.db, "VCONST")
    assert len(points) == len(monitoring_run.exposure_ids)
    good = [p for p in points if p["flag"] == 0]
    assert len(good) >= 0.95 * len(points)
    mag = arrays(good, "mag")[0]
    metrics = {
        e: m for e, m in zip(monitoring_run.exposure_ids, monitoring_run.metrics, strict=True)
    }
    comparisons = comparison_magnitudes(monitoring_run.db)
    assert len(comparisons) >= 5
    predicted = []
    for p in good:
        frame = metrics[p["exposure_id"]]
        # The comparison ensemble's noise, the same way for the stars the monitor chose: an
        # inverse-variance mean cannot do better than 1 / sqrt(sum of 1 / sigma^2).
        comp_e = np.array([ccd_noise(m, frame) for m in comparisons])
        ensemble = 1.0 / math.sqrt(float(np.sum(1.0 / comp_e**2)))
        predicted.append(math.hypot(ccd_noise(ts.CONSTANT.mag_v, frame), ensemble))
    ratio = float(np.std(mag, ddof=1) / np.sqrt(np.mean(np.square(predicted))))
    print(f"constant star: scatter {np.std(mag, ddof=1):.4f} mag, ratio to CCD noise {ratio:.3f}")
    assert 0.8 < ratio < 1.2
    assert abs(np.median(mag) - ts.CONSTANT.mag_v) < 0.05  # on the calibrated scale


def test_sine_amplitude_and_period_are_recovered(monitoring_run) -> None:
    good = [p for p in load_light_curve(monitoring_run.db, "VSINE") if p["flag"] == 0]
    t, mag, err = arrays(good, "bjd_tdb", "mag", "mag_err")
    best = find_period(t - 2400000.5, mag, err, min_period_d=0.1)
    period_error = abs(best.period_d / ts.SINE.period_d - 1.0)
    amplitude_error = abs(best.amplitude_mag / ts.SINE.amplitude_mag - 1.0)
    print(f"sine: period error {100 * period_error:.4f} %, amplitude {100 * amplitude_error:.2f} %")
    assert period_error < 0.001
    assert amplitude_error < 0.03
    stats = {r["target"]: r for r in list_light_curves(monitoring_run.db)}
    assert stats["VSINE"]["chi2_red"] > 20 and stats["VSINE"]["stetson_j"] > 2
    sine = stats["VSINE"]
    assert sine["period_d"] == pytest.approx(ts.SINE.period_d, rel=1e-3), (
        sine["var_class"],
        sine["var_probs"],
    )
    assert stats["VCONST"]["chi2_red"] < 3 and abs(stats["VCONST"]["stetson_j"]) < 1


def test_one_percent_transit_is_detected(monitoring_run) -> None:
    dips = [a for a in list_alerts(monitoring_run.db) if a["kind"] == "dip"]
    transit = [a for a in dips if a["target"] == "VTRANSIT"]
    assert transit, f"no dip alert on the transiting star; alerts: {dips}"
    alert = transit[0]
    in_transit = ts.TRANSIT.delta_mag(alert["mjd"])
    assert in_transit > 0.0  # raised during the transit
    assert alert["delta_mag"] == pytest.approx(0.0109, abs=0.004)


def test_transient_alerted_on_its_first_frame_above_the_limit(monitoring_run) -> None:
    new = [a for a in list_alerts(monitoring_run.db) if a["kind"] == "new_source"]
    assert len(new) == 1, [a["message"] + f" eid {a['exposure_id']}" for a in new]
    run = monitoring_run
    true_mag = ts.TRANSIENT.mag("V", np.array(run.mjd))
    limits = np.array([m["limiting_mag"] for m in run.metrics])
    # The detection limit of a new source: the frame's 50 % completeness magnitude less the
    # configured margin (where detection is near complete).
    margin = run.monitor.config.new_source_margin_mag
    first = int(np.flatnonzero(true_mag < limits - margin)[0])
    assert new[0]["exposure_id"] == run.exposure_ids[first]
    print(f"transient: true mag {true_mag[first]:.2f} at limit {limits[first]:.2f}")


def test_no_alert_on_the_constant_star(monitoring_run) -> None:
    alerts = list_alerts(monitoring_run.db)
    assert not [a for a in alerts if a["target"] == "VCONST" and a["kind"] != "new_source"]
    assert not [a for a in alerts if a["kind"] in ("brighten", "fade")]


def test_cli_exports_the_light_curve(monitoring_run, tmp_path, capsys) -> None:
    from astropy.table import Table

    from obsctl.cli import main

    config = tmp_path / "obsctl.toml"
    config.write_text(
        "version = 1\n[site]\nname='x'\nlatitude_deg=31.96\nlongitude_deg=-111.6\n[telescope]\n"
        "focal_length_mm=800\naperture_mm=200\n[devices.camera]\ndriver='alpaca'\n"
        f"address='127.0.0.1:9'\n[data]\ndirectory='{monitoring_run.db.path.parent}'\n"
    )
    out, png = tmp_path / "vsine.ecsv", tmp_path / "vsine.png"
    code = main(["--config", str(config), "lightcurve", "VSINE", "--format", "ecsv",
                 "--out", str(out), "--plot", str(png), "--fold"])  # fmt: skip
    assert code == 0 and png.stat().st_size > 10_000
    # Folded on each method's best period, the chosen one first: the sine's.
    folded = capsys.readouterr().err.split("folded on ", 1)[1].split(" (chosen")[0]
    first = float(folded.split(",")[0].split()[1])
    assert first == pytest.approx(ts.SINE.period_d, rel=1e-3)
    table = Table.read(out)
    assert len(table) == len(monitoring_run.exposure_ids) and "bjd_tdb" in table.colnames
    assert main(["--config", str(config), "lightcurve", "VSINE", "--format", "aavso"]) == 0
    assert capsys.readouterr().out.startswith("#TYPE=EXTENDED")
    assert main(["--config", str(config), "lightcurve", "NOPE"]) == 1
    assert main(["--config", str(config), "alerts"]) == 0
    assert "new source" in capsys.readouterr().out
