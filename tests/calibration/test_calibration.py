"""Calibration masters from simulated frames, checked against the simulator's own truth."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsctl.calibration.build import build_masters
from obsctl.calibration.fitsrows import FitsRows
from obsctl.calibration.masters import MasterSelection, select_masters
from obsctl.cli import main
from obsctl.config import SiteConfig, TelescopeConfig
from obsctl.devices import CameraImage
from obsctl.frame import Frame
from obsctl.pipeline.calibrate import Calibrate
from obsctl.pipeline.stage import Stage
from obsctl.processing.calibrate import calibrate_image
from obsctl.simulators import scenes
from obsctl.simulators.render import (
    column_bias,
    dark_current_e_s,
    flat_response,
    hot_pixel_map,
    render_exposure,
)
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.headers import FrameContext
from obsctl.store.raw_store import RawStore

from ..daemon_helpers import write_config

NX, NY = 160, 128  # not square, so that a transposed master would show
GAIN_E_ADU = 1.0
OFFSET = 10
TEMP_C = -10.0
DARK_S = 60.0
FLAT_S = 1.0
N_FRAMES = 15
START = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
NIGHT = "2026-11-25"

# The dark current is high, so that the dark signal stands well above the read noise, and
# the cosmic rays give a couple of hits per dark, for the clipping to remove.
SENSOR = scenes.sensor(
    width_px=NX, height_px=NY, full_well_e=60000.0, read_noise_e=3.5, adu_per_offset=10.0,
    dark_current_e_s=0.5, dark_doubling_c=6.3, hot_pixel_fraction=2e-3, cosmic_rate_cm2_s=5.0,
    seed=11,
)  # fmt: skip
# The lamp alone lights the sensor (no sky, no stars): the rest of the scene plays no part.
LAMP = scenes.sky(flat_panel_e_s=30000.0)
SITE = SiteConfig(name="Test site", latitude_deg=28.76, longitude_deg=-17.88)
SCOPE = TelescopeConfig(focal_length_mm=800, aperture_mm=200)
BIAS_LEVEL = SENSOR.bias_adu + OFFSET * SENSOR.adu_per_offset


class Observatory:
    """A data directory with an exposure log, filled with rendered raw frames."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = RawStore(root / "raw")
        self.db = ExposureLog(root / "obsctl.sqlite")
        self.count = 0

    def take(
        self,
        image_type: str,
        exposure_s: float,
        *,
        temp_c: float = TEMP_C,
        filter_name: str | None = None,
        light: bool = False,
        night_offset_days: int = 0,
    ) -> tuple[Path, np.ndarray, fits.Header]:
        self.count += 1
        spec = scenes.exposure(
            SENSOR, exposure_s=exposure_s, light=light, electrons_per_adu=GAIN_E_ADU,
            offset=OFFSET, ccd_temperature_c=temp_c, seed=self.count,
        )  # fmt: skip
        image = render_exposure(SENSOR, spec, LAMP if light else None).image
        start = START + timedelta(days=night_offset_days, minutes=self.count)
        meta = scenes.image_metadata(spec, SENSOR, start_time=start, set_temperature_c=TEMP_C)
        ctx = FrameContext(
            image=CameraImage(data=image, metadata=meta),
            image_type=image_type,
            site=SITE,
            telescope=SCOPE,
            frame_number=self.count,
            start_time=start,
            filter_name=filter_name,
        )
        path, header = scenes.store_raw(self.store, self.db, ctx)
        return path, image, header


def light_frame(path: Path) -> Frame:
    with fits.open(path) as hdul:
        return Frame(data=np.asarray(hdul[0].data), header=hdul[0].header.copy(), path=str(path))


@pytest.fixture(scope="module")
def observatory(tmp_path_factory: pytest.TempPathFactory) -> Observatory:
    obs = Observatory(tmp_path_factory.mktemp("calib"))
    for _ in range(N_FRAMES):
        obs.take("BIAS", 0.0)
    for _ in range(N_FRAMES):
        obs.take("DARK", DARK_S)
    for _ in range(N_FRAMES):
        obs.take("FLAT", FLAT_S, filter_name="V", light=True)
    return obs


@pytest.fixture(scope="module")
def masters(observatory: Observatory) -> dict[str, Path]:
    records = build_masters(observatory.db, observatory.root, night=NIGHT, threads=2)
    assert [r.kind for r in records] == ["bias", "dark", "flat"]
    return {r.kind: observatory.root / r.file_path for r in records}


def test_masters_are_recorded_with_provenance(observatory: Observatory, masters) -> None:
    rows = observatory.db.query("SELECT * FROM masters ORDER BY id")
    assert [(r["kind"], r["n_frames"], r["method"]) for r in rows] == [
        ("bias", N_FRAMES, "sigma"),
        ("dark", N_FRAMES, "sigma"),
        ("flat", N_FRAMES, "sigma"),
    ]
    dark_row = rows[1]
    assert dark_row["camera"] == "Simulated camera" and dark_row["readout_mode"] == "Normal"
    assert dark_row["exposure_s"] == DARK_S and dark_row["ccd_temp_c"] == TEMP_C
    assert dark_row["gain"] == 0 and dark_row["offset"] == OFFSET and dark_row["night"] == NIGHT
    assert rows[2]["filter"] == "V"
    assert all(r["file_path"].startswith(f"masters/{NIGHT}/") for r in rows)

    header = fits.getheader(masters["dark"])
    assert header["IMAGETYP"] == "MASTER DARK" and header["NCOMBINE"] == N_FRAMES
    assert header["COMBINE"] == "sigma-clipped mean" and header["BIASSUB"] is True
    assert header["MBIAS"] == masters["bias"].name
    history = "\n".join(str(h) for h in header["HISTORY"])
    darks = observatory.db.exposures(image_type="DARK")
    assert all(Path(d["file_path"]).name in history for d in darks)
    flat_header = fits.getheader(masters["flat"])
    assert flat_header["MDARK"] == masters["dark"].name and flat_header["FILTER"] == "V"
    assert fits.getdata(masters["bias"]).dtype == np.dtype(">f4")


def test_master_bias_is_level_plus_column_structure(masters) -> None:
    bias = fits.getdata(masters["bias"]).astype(np.float64)
    truth = BIAS_LEVEL + column_bias(SENSOR).astype(np.float64)
    # Per pixel: read noise 3.5 ADU / sqrt(15) = 0.9 ADU; column means over 128 rows: 0.08 ADU
    # plus the mean row noise; the column pattern itself is 2 ADU RMS.
    residual = bias - truth[None, :]
    assert abs(residual.mean()) < 0.2
    assert residual.std() < 1.2
    assert np.abs(residual.mean(axis=0) - residual.mean()).max() < 0.5


def test_master_dark_is_thermal_signal_with_hot_pixels(masters) -> None:
    dark = fits.getdata(masters["dark"]).astype(np.float64)
    normal_adu = dark_current_e_s(SENSOR, TEMP_C) * DARK_S / GAIN_E_ADU  # 30 ADU
    positions, factors = hot_pixel_map(SENSOR)
    hot = np.zeros(dark.shape, bool)
    hot[positions[:, 0], positions[:, 1]] = True
    # 20 000 ordinary pixels, each to sqrt(30 + 3.5^2) / sqrt(15) = 1.7 ADU: the mean is
    # known to 0.02 ADU; allow 2 % for the slight bias of clipping skewed Poisson values.
    assert np.mean(dark[~hot]) == pytest.approx(normal_adu, rel=0.02)
    expected_hot = factors * normal_adu
    measured_hot = dark[positions[:, 0], positions[:, 1]]
    np.testing.assert_allclose(measured_hot, expected_hot, rtol=0.03)
    # The bias (600 ADU) is gone and nothing of a cosmic ray is left.
    assert dark[~hot].max() < normal_adu + 12.0


def test_master_flat_matches_the_flat_field_to_half_a_percent(masters) -> None:
    flat = fits.getdata(masters["flat"]).astype(np.float64)
    truth = flat_response(SENSOR, x0=0, y0=0, width=NX, height=NY).astype(np.float64)
    truth /= np.median(truth)
    assert np.median(flat) == pytest.approx(1.0, abs=1e-6)
    # Shot noise of 30 000 e per flat, 15 flats: 0.15 % per pixel.
    assert np.std(flat / truth - 1.0) < 0.005
    assert truth.max() / truth.min() > 1.1  # there was structure to remove


def test_calibrated_flat_lamp_frame_is_flat(observatory: Observatory, masters) -> None:
    path, raw, _ = observatory.take("LIGHT", FLAT_S, filter_name="V", light=True)
    stage: Stage = Calibrate(observatory.db, observatory.root, max_age_days=30)
    frame = stage.process(light_frame(path))
    data = frame.data
    assert data.dtype == np.float32 and data.dtype.isnative and data.flags.c_contiguous
    assert frame.flags == () and frame.provenance == ("calibrate",)
    h = frame.header
    assert h["CALSTAT"] == "BDF" and h["BUNIT"] == "ADU"
    assert (h["MBIAS"], h["MDARK"], h["MFLAT"]) == tuple(
        masters[k].name for k in ("bias", "dark", "flat")
    )
    assert h["MDARKSCL"] == pytest.approx(FLAT_S / DARK_S)

    def structure(image: np.ndarray) -> float:
        # RMS of 8x8 block means relative to the level: shot noise (0.6 % per pixel) averages
        # down to 0.07 %, what is left is flat-field structure.
        blocks = image.reshape(NY // 8, 8, NX // 8, 8).mean(axis=(1, 3))
        return float(np.std(blocks) / np.mean(blocks))

    assert structure(raw.astype(np.float64) - BIAS_LEVEL) > 0.03  # vignetting, dust, before
    assert structure(data) < 0.005


def test_dark_scaled_when_no_exposure_matches(observatory: Observatory, masters) -> None:
    path, raw, _ = observatory.take("LIGHT", 30.0, filter_name="V")
    frame = Calibrate(observatory.db, observatory.root).process(light_frame(path))
    assert frame.header["MDARKSCL"] == pytest.approx(0.5) and frame.header["CALSTAT"] == "BDF"
    bias, dark, flat = (
        fits.getdata(masters[k]).astype(np.float32) for k in ("bias", "dark", "flat")
    )
    expected = (raw.astype(np.float32) - bias - 0.5 * dark) / flat
    np.testing.assert_allclose(frame.data, expected, atol=1e-3)
    # A dark frame of 30 s calibrates to about zero: bias and half the 60 s dark are gone.
    assert abs(np.median(frame.data)) < 1.0


def test_temperature_outside_tolerance_means_no_masters(observatory: Observatory, masters) -> None:
    path, raw, _ = observatory.take("LIGHT", 30.0, filter_name="V", temp_c=TEMP_C + 5.0)
    frame = Calibrate(observatory.db, observatory.root, temperature_tolerance_c=2.0).process(
        light_frame(path)
    )
    assert frame.flags == ("no master bias", "no master dark", "no master flat")
    assert frame.header["CALSTAT"] == "none" and "MBIAS" not in frame.header
    np.testing.assert_array_equal(frame.data, raw.astype(np.float32))
    # With a wider tolerance the same frame gets its masters (the stage opening the log itself).
    wide = Calibrate(observatory.db.path, observatory.root, temperature_tolerance_c=6.0)
    try:
        assert wide.process(light_frame(path)).header["CALSTAT"] == "BDF"
    finally:
        wide.close()


def test_filter_mismatch_leaves_frame_unflattened(observatory: Observatory, masters) -> None:
    path, _, _ = observatory.take("LIGHT", DARK_S, filter_name="R")
    frame = Calibrate(observatory.db, observatory.root).process(light_frame(path))
    assert frame.flags == ("no master flat",)
    assert frame.header["CALSTAT"] == "BD" and frame.header["MDARKSCL"] == 1.0


def test_masters_too_old_are_not_used(observatory: Observatory, masters) -> None:
    path, _, _ = observatory.take("LIGHT", DARK_S, filter_name="V", night_offset_days=40)
    old = Calibrate(observatory.db, observatory.root, max_age_days=30).process(light_frame(path))
    assert old.header["CALSTAT"] == "none"
    assert (
        Calibrate(observatory.db, observatory.root, max_age_days=45)
        .process(light_frame(path))
        .header["CALSTAT"]
        == "BDF"
    )


def test_missing_masters_flag_instead_of_failing(tmp_path: Path) -> None:
    db = ExposureLog(tmp_path / "obsctl.sqlite")
    try:
        raw = np.full((8, 6), 700, dtype=">u2")  # big-endian, as FITS data
        header = fits.Header({"EXPTIME": 10.0, "CAMERA": "cam", "XBINNING": 1, "YBINNING": 1})
        frame = Calibrate(db, tmp_path).process(Frame(data=raw, header=header, exposure_id=3))
    finally:
        db.close()
    assert frame.flags == ("no master bias", "no master dark", "no master flat")
    assert frame.data.dtype == np.float32 and frame.data.dtype.isnative
    assert np.all(frame.data == 700.0)


def test_selection_function_can_stand_in_for_the_database(masters) -> None:
    calls = []

    def choose(header: fits.Header) -> MasterSelection:
        calls.append(header["EXPTIME"])
        return MasterSelection()

    frame = Frame(data=np.zeros((4, 4), np.uint16), header=fits.Header({"EXPTIME": 5.0}))
    out = Calibrate(choose, Path("/nonexistent")).process(frame)
    assert calls == [5.0] and out.header["CALSTAT"] == "none"


def _master_row(db: ExposureLog, kind: str, name: str, **values: object) -> None:
    row = {
        "kind": kind,
        "file_path": f"masters/{name}.fits",
        "night": NIGHT,
        "camera": "cam",
        "bin_x": 1,
        "bin_y": 1,
        "readout_mode": "Normal",
        "gain": 0,
        "offset": 10,
        "ccd_temp_c": -10.0,
        "exposure_s": 60.0,
        "filter": None,
        "n_frames": 10,
        "method": "median",
        "created_utc": "2026-11-26T08:00:00.000+00:00",
    } | values
    names = list(row)
    db.execute(
        f"INSERT INTO masters ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
        [row[n] for n in names],
    )


def test_selection_rules(tmp_path: Path) -> None:
    db = ExposureLog(tmp_path / "obsctl.sqlite")
    try:
        _master_row(db, "dark", "d60")
        _master_row(db, "dark", "d30", exposure_s=30.0)
        _master_row(db, "dark", "d20", exposure_s=20.0)
        _master_row(db, "dark", "d30-old", exposure_s=30.0, night="2026-11-01")
        _master_row(db, "bias", "b-old", night="2026-11-10")
        _master_row(db, "bias", "b-new", night="2026-11-24")
        _master_row(db, "bias", "b-gain", night=NIGHT, gain=100)
        _master_row(db, "bias", "b-bin2", night=NIGHT, bin_x=2, bin_y=2)
        _master_row(db, "flat", "f-v", filter="V")
        _master_row(db, "flat", "f-r", filter="R")
        header = fits.Header(
            {
                "CAMERA": "cam",
                "XBINNING": 1,
                "YBINNING": 1,
                "READOUTM": "Normal",
                "GAIN": 0,
                "OFFSET": 10,
                "CCD-TEMP": -10.5,
                "DAY-OBS": NIGHT,
                "FILTER": "v",
            }
        )

        def pick(exptime: float, **changes: object) -> MasterSelection:
            h = header.copy()
            h["EXPTIME"] = exptime
            for key, value in changes.items():
                h[key] = value
            return select_masters(db, h, max_age_days=30, temperature_tolerance_c=2.0)

        def name(record) -> str | None:
            return None if record is None else Path(record.file_path).stem

        s = pick(30.0)
        assert (name(s.bias), name(s.dark), name(s.flat)) == ("b-new", "d30", "f-v")
        assert name(pick(40.0).dark) == "d60"  # nearest longer, scaled down
        assert name(pick(100.0).dark) == "d60"  # none longer: nearest shorter, scaled up
        assert name(pick(25.0).dark) == "d30"
        assert name(pick(30.0, FILTER="B").flat) is None
        assert name(pick(30.0, GAIN=100).bias) == "b-gain"
        assert name(pick(30.0, READOUTM="Fast").bias) is None
        assert name(pick(30.0, **{"CCD-TEMP": -13.0}).bias) is None
        assert name(pick(30.0, **{"DAY-OBS": "2026-11-10"}).dark) == "d30-old"
        rejected = select_masters(
            db,
            dict(header) | {"EXPTIME": 30.0},
            max_age_days=30,
            temperature_tolerance_c=2.0,
            accept=lambda m: not m.file_path.endswith("b-new.fits"),
        )
        assert name(rejected.bias) == "b-old"  # the best that the caller accepts
    finally:
        db.close()


def test_temperature_groups_and_rebuild(tmp_path: Path) -> None:
    obs = Observatory(tmp_path)
    try:
        for temp in (-10.0, -9.5, -10.4, -4.0, -4.2, -3.9):
            obs.take("BIAS", 0.0, temp_c=temp)
        first = build_masters(obs.db, tmp_path, method="median", min_frames=3, threads=1)
        assert sorted(r.ccd_temp_c for r in first) == [-10.0, -4.0]
        again = build_masters(obs.db, tmp_path, method="median", min_frames=3, threads=1)
        assert sorted(r.file_path for r in again) == sorted(r.file_path for r in first)
        assert len(obs.db.query("SELECT id FROM masters")) == 2  # replaced, not duplicated
    finally:
        obs.db.close()


def test_calib_build_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obs = Observatory(tmp_path / "data")
    try:
        for _ in range(3):
            obs.take("BIAS", 0.0)
    finally:
        obs.db.close()
    body = f'[data]\ndirectory = "{tmp_path / "data"}"\n[calibration]\ntile_rows = 16\n'
    config = write_config(tmp_path, body)
    assert main(["-c", str(config), "calib", "build", "--night", NIGHT, "--method", "median"]) == 0
    out = capsys.readouterr().out
    assert "bias" in out and "1 master(s) built" in out
    assert (tmp_path / "data" / "masters" / NIGHT).is_dir()


def test_fits_rows_decode_unsigned_16_bit(tmp_path: Path) -> None:
    data = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data).writeto(path)
    with FitsRows(path) as rows:
        part = rows[3:9]
        assert part.dtype == np.uint16 and part.dtype.isnative
        np.testing.assert_array_equal(part, data[3:9])
        np.testing.assert_array_equal(rows[1:60:7], data[1:60:7])
        assert rows.shape == (64, 64)
    truncated = tmp_path / "short.fits"
    truncated.write_bytes(path.read_bytes()[: 2880 + 64 * 2 * 10])
    with pytest.raises(OSError, match="truncated"):
        FitsRows(truncated)
    floats = tmp_path / "f32.fits"
    fits.PrimaryHDU(data.astype(np.float32) / 7).writeto(floats)
    with FitsRows(floats) as rows:
        np.testing.assert_array_equal(rows[5:6], data[5:6].astype(np.float32) / 7)


def test_calibrate_image_conventions() -> None:
    raw = np.full((4, 5), 1100.0, dtype=">f4")
    bias = np.full((4, 5), 500.0, np.float32)
    dark = np.full((4, 5), 60.0, np.float32)  # thermal only, over 60 s
    flat = np.full((4, 5), 2.0, np.float32)
    flat[0, 0] = 0.0
    out = calibrate_image(
        raw, bias=bias, dark=dark, dark_exposure_s=60.0, exposure_s=30.0, flat=flat
    )
    assert out.data.dtype == np.float32 and out.data.dtype.isnative and out.missing == ()
    assert out.dark_scale == 0.5
    assert out.data[1, 1] == pytest.approx((1100 - 500 - 30) / 2.0)
    assert out.bad_flat is not None and out.bad_flat[0, 0] and out.bad_flat.sum() == 1
    assert out.data[0, 0] == pytest.approx(1100 - 500 - 30)  # left unflattened, not inf
    none = calibrate_image(
        raw, bias=None, dark=None, dark_exposure_s=None, exposure_s=1.0, flat=None
    )
    assert none.missing == ("bias", "dark", "flat") and np.all(none.data == 1100.0)
    with pytest.raises(ValueError, match="master bias has shape"):
        calibrate_image(
            raw, bias=bias[:2], dark=None, dark_exposure_s=None, exposure_s=1, flat=None
        )
    with pytest.raises(ValueError, match="dark_exposure_s must be > 0"):
        calibrate_image(raw, bias=None, dark=dark, dark_exposure_s=0.0, exposure_s=1, flat=None)


def test_unreadable_master_is_a_flag(tmp_path: Path) -> None:
    db = ExposureLog(tmp_path / "obsctl.sqlite")
    try:
        _master_row(db, "bias", "gone", camera="cam")
        header = fits.Header(
            {"EXPTIME": 1.0, "CAMERA": "cam", "READOUTM": "Normal", "GAIN": 0, "OFFSET": 10}
        )
        header["CCD-TEMP"] = -10.0
        header["DAY-OBS"] = NIGHT
        stage = Calibrate(
            lambda h: select_masters(db, h, max_age_days=30, temperature_tolerance_c=2),
            tmp_path,
        )
        frame = stage.process(Frame(data=np.zeros((4, 4), np.uint16), header=header))
    finally:
        db.close()
    assert frame.flags[0] == "master bias unreadable"
    assert "no master bias" in frame.flags


def test_replace_keeps_frame_immutable(observatory: Observatory, masters) -> None:
    path, _, _ = observatory.take("LIGHT", DARK_S, filter_name="V")
    frame = light_frame(path)
    before = (frame.data.copy(), dict(frame.header))
    calibrated = Calibrate(observatory.db, observatory.root).process(frame)
    np.testing.assert_array_equal(frame.data, before[0])
    assert dict(frame.header) == before[1] and calibrated is not frame
    assert replace(calibrated).header["CALSTAT"] == "BDF"


def test_masters_of_other_geometry_are_not_used(observatory: Observatory, masters) -> None:
    path, _, _ = observatory.take("LIGHT", DARK_S, filter_name="V")
    full = light_frame(path)
    sub = replace(full, data=full.data[:64, :80].copy())
    stage = Calibrate(observatory.db, observatory.root)
    assert stage.process(sub).flags == ("no master bias", "no master dark", "no master flat")
    shifted = full.header.copy()
    shifted["XORGSUBF"] = 8  # same size, other pixels
    assert stage.process(replace(full, header=shifted)).header["CALSTAT"] == "none"
    assert stage.process(full).header["CALSTAT"] == "BDF"


def test_new_frames_rebuild_the_masters_made_from_them() -> None:
    from obsctl.calibration.build import kinds_affected

    assert kinds_affected(["FLAT"]) == ["flat"]
    assert kinds_affected(["DARK", "FLAT"]) == ["dark", "flat"]
    assert kinds_affected(["bias"]) == ["bias", "dark", "flat"]
    assert kinds_affected(["LIGHT"]) == []


def test_fits_sections() -> None:
    from obsctl.processing.calibrate import fits_section

    assert fits_section("[17:528,1:520]", (520, 536)) == (slice(0, 520), slice(16, 528))
    assert fits_section(" [ 4: 13, 1 :520 ] ", (520, 536)) == (slice(0, 520), slice(3, 13))
    for bad in ("[0:10,1:5]", "[5:4,1:5]", "[1:537,1:520]", "17:528,1:520", "[a:b,1:2]"):
        with pytest.raises(ValueError):
            fits_section(bad, (520, 536))


def test_overscan_and_trim_without_a_master_bias(tmp_path: Path) -> None:
    """A raw CCD frame from elsewhere: its overscan strip is its bias, its data section is kept."""
    rng = np.random.default_rng(3)
    ny, nx = 60, 80
    bias_rows = 200.0 + 0.2 * np.arange(ny)  # a slow drift along the columns' readout
    sky = 50.0
    raw = rng.normal(0.0, 2.0, (ny, nx)) + bias_rows[:, None]
    raw[:, 10:] += sky  # columns 11..80 see light; 1..8 are the overscan, 9..10 a gap
    raw[5, 3] = 60000.0  # a cosmic ray in the overscan does not pull the median
    header = fits.Header(
        [("EXPTIME", 30.0), ("BIASSEC", "[1:8,1:60]"), ("TRIMSEC", "[11:80,1:60]"),
         ("CRPIX1", 40.0), ("CRPIX2", 30.0)]
    )  # fmt: skip
    stage = Calibrate(lambda h: MasterSelection(None, None, None), tmp_path)
    out = stage.process(Frame(data=raw.astype(np.uint16), header=header))
    assert out.data.shape == (60, 70)
    assert float(np.median(out.data)) == pytest.approx(sky, abs=0.5)
    # Row by row: the drift is gone.
    row_levels = np.median(out.data, axis=1)
    assert np.ptp(row_levels) < 3.0
    assert out.header["OVERSCAN"] == pytest.approx(np.median(bias_rows), abs=0.5)
    assert out.header["CALSTAT"] == "O" and out.header["TRIMMED"] == "[11:80,1:60]"
    assert out.header["CRPIX1"] == 30.0 and out.header["CRPIX2"] == 30.0
    assert out.header["LTV1"] == -10.0 and "TRIMSEC" not in out.header
    assert "no master bias" not in out.flags and "no master dark" in out.flags
    # Processed again (a reprocessing of the calibrated file), nothing is cut twice.
    again = stage.process(out)
    assert again.data.shape == (60, 70)


def test_bad_sections_are_flags_not_failures(tmp_path: Path) -> None:
    raw = np.full((20, 30), 100, dtype=np.uint16)
    header = fits.Header([("BIASSEC", "[1:40,1:20]"), ("TRIMSEC", "nonsense")])
    stage = Calibrate(lambda h: MasterSelection(None, None, None), tmp_path)
    out = stage.process(Frame(data=raw, header=header))
    assert out.data.shape == (20, 30)
    assert any(f.startswith("BIASSEC ignored") for f in out.flags)
    assert any(f.startswith("TRIMSEC/DATASEC ignored") for f in out.flags)


def test_star_fluxes_after_the_pipelines_own_masters_match_the_simulator_input(
    observatory: Observatory, masters: dict[str, Path]
) -> None:
    """Aperture fluxes of a light frame calibrated with masters the pipeline built itself.

    Dark current, hot pixels and cosmic rays are on (`SENSOR`); the truth is the simulator's
    input: each star's expected electrons (catalog flux x exposure) times the fraction of a
    Moffat profile inside the aperture, computed analytically here (not with SEP), times the
    sensor's true median response (the star's own pixels' response is what the master flat
    divides out; being normalised to its median, it leaves the median response in).
    """
    import math

    from obsctl.pipeline.photometry import SepPhotometry

    scene = scenes.sky(
        seeing_arcsec=3.0, moffat_beta=3.0, density_per_deg2=20000.0, zero_point_mag=24.0
    )
    observatory.count += 1
    spec = scenes.exposure(
        SENSOR, exposure_s=DARK_S, electrons_per_adu=GAIN_E_ADU, offset=OFFSET,
        ccd_temperature_c=TEMP_C, seed=observatory.count,
    )  # fmt: skip
    rendered = render_exposure(SENSOR, spec, scene)
    start = START + timedelta(minutes=observatory.count)
    meta = scenes.image_metadata(spec, SENSOR, start_time=start, set_temperature_c=TEMP_C)
    ctx = FrameContext(
        image=CameraImage(data=rendered.image, metadata=meta), image_type="LIGHT", site=SITE,
        telescope=SCOPE, frame_number=observatory.count, start_time=start, filter_name="V",
    )  # fmt: skip
    path, _ = scenes.store_raw(observatory.store, observatory.db, ctx)
    frame = Calibrate(observatory.db, observatory.root).process(light_frame(path))
    assert frame.header["CALSTAT"] == "BDF"
    frame = SepPhotometry(read_noise_e=3.5, saturation_adu=60000.0).process(frame)
    catalog = frame.sources
    assert catalog is not None and frame.aperture_radius_px is not None

    fwhm_px = scene.seeing_arcsec / scene.pixel_scale_arcsec
    alpha = fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / scene.moffat_beta) - 1.0))
    inside = 1.0 - (1.0 + (frame.aperture_radius_px / alpha) ** 2) ** (1.0 - scene.moffat_beta)
    median_response = float(np.median(flat_response(SENSOR, x0=0, y0=0, width=NX, height=NY)))
    truth = rendered.stars
    ratios = []
    for star in truth:
        others = np.hypot(truth["x"] - star["x"], truth["y"] - star["y"])
        if np.sort(others)[1] < 8 or not (8 < star["x"] < NX - 9 and 8 < star["y"] < NY - 9):
            continue  # a neighbour's light in the aperture, or the aperture off the frame
        distance = np.hypot(catalog["x"] - star["x"], catalog["y"] - star["y"])
        k = int(np.argmin(distance))
        if distance[k] > 1.0 or catalog["snr"][k] < 50 or catalog["flags"][k]:
            continue
        expected_e = star["flux_e"] * inside * median_response
        ratios.append(catalog["flux"][k] * GAIN_E_ADU / expected_e)
    assert len(ratios) >= 5, ratios
    # The flat field, the dark and the bias come from the pipeline's masters: within 1 %.
    print(f"\n{len(ratios)} stars, measured / expected: median {np.median(ratios):.4f}")
    assert float(np.median(ratios)) == pytest.approx(1.0, abs=0.01), ratios
