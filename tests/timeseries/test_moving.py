"""Moving-object linking and the MPC report, against the simulator's asteroids.

The truth is `Asteroid.position` at each frame's middle and the simulated candidates'
sources (`obsctl.simulators.candidates`); dates are checked against astropy's calendar.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from astropy.time import Time

from obsctl.simulators.candidates import BOGUS, STATIC, CandidateField, moving_field
from obsctl.simulators.transients import Asteroid
from obsctl.timeseries.matching import separation_arcsec
from obsctl.timeseries.moving import DETECTION_DTYPE, Track, link_tracks, mpc_report

FIELD_SEEDS = (11, 12, 13)


def _truth_rows(field: CandidateField, k: int) -> set[int]:
    return set(np.flatnonzero(field.source == k).tolist())


def _exact(tracks: list[Track], rows: set[int]) -> Track | None:
    return next((t for t in tracks if set(t.indices) == rows), None)


def _pa_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@pytest.fixture(scope="module")
def fields() -> list[tuple[CandidateField, list[Track]]]:
    # 40 asteroids at 1-60 arcsec/min, 300 bogus and 20 static transients per frame,
    # 4 frames 4 minutes apart, 30 s exposures (trails up to 30 arcsec).
    out = []
    for seed in FIELD_SEEDS:
        field = moving_field(seed)
        out.append((field, link_tracks(field.detections)))
    return out


def test_links_asteroids_across_rates_with_their_detections(fields) -> None:
    found, total = 0, 0
    for field, tracks in fields:
        for k, asteroid in enumerate(field.asteroids):
            rows = _truth_rows(field, k)
            if len(rows) < 4:  # too faint or too trailed to be detected on every frame
                continue
            total += 1
            track = _exact(tracks, rows)
            if track is None:
                continue
            found += 1
            rate = asteroid.rate_arcsec_min
            assert abs(track.rate_arcsec_min - rate) <= 0.02 * rate + 0.02, asteroid
            assert _pa_diff(track.pa_deg, asteroid.pa_deg) <= max(1.0, 3.0 / rate), asteroid
            assert track.mag == pytest.approx(asteroid.mag_v, abs=0.1)
            ra, dec = track.predict(field.frame_mjd)
            true_ra, true_dec = asteroid.position(field.frame_mjd)
            # The fitted line is good to about its centroids' errors (0.05 arcsec for the
            # brightest point sources, over an arcsec along the trails of the fastest).
            err = float(np.max(field.detections["pos_err_arcsec"][list(track.indices)]))
            assert np.all(separation_arcsec(ra, dec, true_ra, true_dec) < 0.2 + 2.5 * err)
    assert total >= 100
    assert found / total >= 0.9


def test_completeness_holds_at_both_ends_of_the_rate_band() -> None:
    for rates in ((1.0, 3.0), (50.0, 60.0)):
        field = moving_field(5, rate_range_arcsec_min=rates, n_asteroids=30)
        tracks = link_tracks(field.detections)
        candidates = [k for k in range(30) if len(_truth_rows(field, k)) == 4]
        linked = [k for k in candidates if _exact(tracks, _truth_rows(field, k))]
        assert len(candidates) >= 15
        assert len(linked) / len(candidates) >= 0.9, rates


def test_static_transients_are_never_linked(fields) -> None:
    for field, tracks in fields:
        for track in tracks:
            assert not np.any(field.source[list(track.indices)] == STATIC)
    # Nor as the slow mover they could pass for on their own.
    field = moving_field(3, n_asteroids=0, n_bogus=0, n_static=50)
    assert link_tracks(field.detections, max_chance_tracks=math.inf) == []


def test_tracks_of_pure_noise_are_rare() -> None:
    # Measured: no chance track in 10 fields of 300 bogus candidates per frame and 20 static
    # transients (4 frames); with every 3-detection track kept (max_chance_tracks=inf), 43
    # per field.
    tracks = 0
    for seed in range(10):
        field = moving_field(100 + seed, n_asteroids=0)
        tracks += len(link_tracks(field.detections))
    assert tracks <= 1


def test_no_track_mixes_objects(fields) -> None:
    for field, tracks in fields:
        for track in tracks:
            sources = set(field.source[list(track.indices)].tolist()) - {BOGUS}
            assert len(sources) <= 1


def test_chance_estimate_decides_how_many_detections_a_field_needs() -> None:
    # One detection of every asteroid lost: in a sparse field three detections are
    # significant, among 300 bogus candidates per frame they are not.
    sparse = moving_field(7, n_asteroids=10, n_bogus=10, drop_fraction=0.15)
    tracks = link_tracks(sparse.detections)
    three = [k for k in range(10) if len(_truth_rows(sparse, k)) == 3]
    assert three
    assert all(_exact(tracks, _truth_rows(sparse, k)) for k in three)
    assert all(t.chance_tracks < 0.1 for t in tracks)
    dense = moving_field(7, n_asteroids=10, n_bogus=300, drop_fraction=0.15)
    assert all(t.n_detections == 4 for t in link_tracks(dense.detections))


def test_crossing_asteroids_keep_their_own_detections() -> None:
    # Both pass one point between the second and third frames, 20 degrees apart, so that
    # on those frames they are a few arcsec from each other.
    mid = 60400.1 + (6.0 * 60.0 + 15.0) / 86400.0
    pair = [
        Asteroid("A", 150.0, 30.0, mid, 10.0, 80.0, 18.0),
        Asteroid("B", 150.0, 30.0, mid, 11.0, 100.0, 18.5),
    ]
    field = moving_field(21, asteroids=pair, n_bogus=300)
    gaps = separation_arcsec(*pair[0].position(field.frame_mjd), *pair[1].position(field.frame_mjd))
    assert np.all(gaps[1:3] < 10.0)
    tracks = link_tracks(field.detections)
    for k in range(2):
        track = _exact(tracks, _truth_rows(field, k))
        assert track is not None, pair[k]
        assert _pa_diff(track.pa_deg, pair[k].pa_deg) < 1.0


def test_trail_across_the_motion_is_dropped() -> None:
    field = moving_field(8, n_asteroids=5, n_bogus=20)
    k = next(k for k in range(5) if len(_truth_rows(field, k)) == 4)
    rows = sorted(_truth_rows(field, k))
    detections = field.detections.copy()
    detections["elongation"][rows[2]] = 4.0
    detections["theta_deg"][rows[2]] = (field.asteroids[k].pa_deg + 90.0) % 180.0
    tracks = link_tracks(detections, max_chance_tracks=math.inf)
    assert _exact(tracks, set(rows) - {rows[2]}) is not None


def test_shape_and_error_fields_are_optional() -> None:
    field = moving_field(9, n_asteroids=10, n_bogus=50, exposure_s=1.0)
    names = ["exposure_id", "mjd", "ra_deg", "dec_deg", "mag", "mag_err", "snr"]
    bare = np.empty(field.detections.size, dtype=[(n, DETECTION_DTYPE[n]) for n in names])
    for name in names:
        bare[name] = field.detections[name]
    tracks = link_tracks(bare)
    linked = sum(_exact(tracks, _truth_rows(field, k)) is not None for k in range(10))
    assert linked >= 9


def test_degenerate_inputs() -> None:
    empty = np.empty(0, dtype=DETECTION_DTYPE)
    assert link_tracks(empty) == []
    field = moving_field(1, n_frames=2)
    assert link_tracks(field.detections) == []
    with pytest.raises(ValueError, match="lack"):
        link_tracks(np.zeros(3, dtype=[("mjd", float)]))
    with pytest.raises(ValueError):
        link_tracks(empty, min_rate_arcsec_min=5.0, max_rate_arcsec_min=1.0)


# ------------------------------------------------------------------------- MPC report


def _parse_line(line: str) -> dict[str, Any]:
    """Read an 80-column line back by its 1-based columns."""

    def col(a: int, b: int) -> str:
        return line[a - 1 : b]

    year, month, day = col(16, 32).split()
    h, m, s = (float(v) for v in col(33, 44).split())
    dd, dm, ds = col(45, 56)[1:].split()
    sign = -1.0 if col(45, 45) == "-" else 1.0
    return {
        "number": col(1, 5),
        "designation": col(6, 12),
        "discovery": col(13, 13),
        "note1": col(14, 14),
        "note2": col(15, 15),
        "date": (int(year), int(month), float(day)),
        "ra_deg": 15.0 * (h + m / 60.0 + s / 3600.0),
        "dec_deg": sign * (float(dd) + float(dm) / 60.0 + float(ds) / 3600.0),
        "blank_57_65": col(57, 65),
        "mag": col(66, 70),
        "band": col(71, 71),
        "blank_72_77": col(72, 77),
        "code": col(78, 80),
        "ra_text": col(33, 44),
        "dec_text": col(45, 56),
    }


def test_mpc_lines_have_the_fields_at_their_columns(fields) -> None:
    field, tracks = fields[0]
    real = [t for t in tracks if np.all(field.source[list(t.indices)] >= 0)][:5]
    report = mpc_report(
        real, field.detections, observatory_code="X05", designation_prefix="OBX", band="V",
        discovery=True,
    )  # fmt: skip
    lines = report.splitlines()
    assert report.endswith("\n")
    assert len(lines) == sum(t.n_detections for t in real)
    row_of_line = [r for t in real for r in t.indices]
    for number, track in enumerate(real, start=1):
        for k, row in enumerate(track.indices):
            line = lines[row_of_line.index(row)]
            assert len(line) == 80
            fields_ = _parse_line(line)
            assert fields_["number"] == " " * 5
            assert fields_["designation"] == f"OBX{number:03d} "
            assert fields_["discovery"] == ("*" if k == 0 else " ")
            assert (fields_["note1"], fields_["note2"]) == (" ", "C")
            assert fields_["blank_57_65"] == " " * 9
            assert fields_["blank_72_77"] == " " * 6
            assert (fields_["band"], fields_["code"]) == ("V", "X05")
            det = field.detections[row]
            # The date against astropy's calendar, to the 1e-5 day written.
            when = Time(float(det["mjd"]), format="mjd", scale="utc").datetime
            year, month, day = fields_["date"]
            assert (year, month) == (when.year, when.month)
            frac = when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6
            assert day == pytest.approx(when.day + frac / 86400.0, abs=0.6e-5)
            assert line[15:32] == f"{year:04d} {month:02d} {day:08.5f} "
            # Positions to the rounding of 0.01 s of RA and 0.1 arcsec of Dec...
            cos_dec = math.cos(math.radians(float(det["dec_deg"])))
            dra = (fields_["ra_deg"] - det["ra_deg"]) * 3600.0 * cos_dec
            assert abs(dra) <= 0.0751
            assert abs(fields_["dec_deg"] - det["dec_deg"]) * 3600.0 <= 0.0501
            # ... and so within the centroid errors of the asteroid's true position.
            k_ast = int(field.source[row])
            true_ra, true_dec = field.asteroids[k_ast].position(det["mjd"])
            sep = separation_arcsec(fields_["ra_deg"], fields_["dec_deg"], true_ra, true_dec)
            assert sep <= 4.0 * float(det["pos_err_arcsec"]) + 0.1
            assert float(fields_["mag"]) == pytest.approx(det["mag"], abs=0.051)
            assert line[67] == "."  # the decimal point in column 68


def _one(mjd: float, ra: float, dec: float, mag: float) -> np.ndarray:
    det = np.zeros(1, dtype=DETECTION_DTYPE)
    det["mjd"], det["ra_deg"], det["dec_deg"], det["mag"] = mjd, ra, dec, mag
    return det


def _track_of(n: int) -> Track:
    return Track(tuple(range(n)), 0.0, 0.0, 0.0, 1.0, 0.0, 20.0, 0.1, 0.1, 0.0)


def test_mpc_rounding_carries_into_the_next_unit() -> None:
    # 23:59:59.999 UTC on 2024 Jan 31, RA 23h59m59.999s, Dec -0d00m00.01s, mag 9.96.
    mjd = float(Time("2024-01-31T23:59:59.9995", scale="utc").mjd)
    det = _one(mjd, 360.0 - 0.001 / 3600.0 * 15.0, -0.01 / 3600.0, 9.96)
    line = mpc_report(
        [_track_of(1)], det, observatory_code="568", designation_prefix="K", band="R"
    ).rstrip("\n")
    assert len(line) == 80
    assert line[15:32] == "2024 02 01.00000 "
    assert line[32:44] == "00 00 00.00 "
    assert line[44:56] == "+00 00 00.0 "
    assert line[65:71] == "10.0 R"
    assert line[5:12] == "K00001 "
    assert line[77:80] == "568"


def test_mpc_southern_declination_and_unknown_magnitude() -> None:
    det = _one(60000.25, 15.0 * (1 + 2 / 60 + 3.456 / 3600), -(12 + 34 / 60 + 56.78 / 3600), np.nan)
    line = mpc_report(
        [_track_of(1)], det, observatory_code="I41", designation_prefix="ZT", band="g",
        first_number=42, note2="B",
    ).rstrip("\n")  # fmt: skip
    assert line[5:12] == "ZT0042 "
    assert line[14] == "B"
    assert line[15:32] == "2023 02 25.25000 "
    assert line[32:44] == "01 02 03.46 "
    assert line[44:56] == "-12 34 56.8 "
    assert line[65:71] == "     g"


def test_mpc_header_and_validation() -> None:
    det = _one(60000.5, 10.0, 10.0, 18.0)
    report = mpc_report(
        [_track_of(1)], det, observatory_code="568", designation_prefix="OB", band="V",
        header={"OBS": "A. Observer", "NET": "Gaia DR3"},
    )  # fmt: skip
    assert report.splitlines()[:3] == ["COD 568", "OBS A. Observer", "NET Gaia DR3"]
    assert len(report.splitlines()[3]) == 80
    kwargs = {"observatory_code": "568", "designation_prefix": "OB", "band": "V"}
    with pytest.raises(ValueError, match="band"):
        mpc_report([], det, **{**kwargs, "band": "C"})
    with pytest.raises(ValueError, match="observatory_code"):
        mpc_report([], det, **{**kwargs, "observatory_code": "5688"})
    with pytest.raises(ValueError, match="designation"):
        mpc_report([_track_of(1)], det, **{**kwargs, "first_number": 10**7})
    with pytest.raises(ValueError, match="designation_prefix"):
        mpc_report([], det, **{**kwargs, "designation_prefix": "1AB"})
