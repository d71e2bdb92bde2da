"""`obsctl reduce` on frames of real observatories (`tests/data/realframes/`).

Neither frame is ours: the SAAO 1.0 m frame is a raw CCD frame with an overscan strip and the
IRAF-era ``GAIN`` card; the PANOPTES frame is a tile-compressed raw colour (Bayer) frame from
a DSLR with no gain card and a real astrometry.net plate solution. Both must reduce with no
options and no config, and the results must make sense by criteria that do not come from the
pipeline (SExtractor-like size and brightness, the frame's own plate solution).
"""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from obsctl.cli import main


def _wcs(header: fits.Header) -> WCS:
    """The header's WCS; astropy's note that it filled MJD-OBS from DATE-OBS is no matter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


REALFRAMES = Path(__file__).resolve().parents[1] / "data" / "realframes"
SAAO = REALFRAMES / "saao_a8280271.fits"
POCS = REALFRAMES / "pocs_solved.fits.fz"


def _reduce(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``obsctl reduce`` with the embedded default config in ``tmp_path``; return stderr."""
    code = main(["reduce", "--workers", "1", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.err


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the embedded default keeps its data directory in ./data
    return tmp_path


def _star_like(catalog: Table, fwhm_px: float) -> np.ndarray:
    """SExtractor-like stars: bright, unflagged, the frame's PSF size, not a sharp spike."""
    return (
        (np.asarray(catalog["snr"]) > 50)
        & (np.asarray(catalog["flags"]) == 0)
        & (np.abs(np.asarray(catalog["fwhm_px"]) / fwhm_px - 1.0) < 0.3)
    )


def test_saao_ccd_frame(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = workdir / SAAO.name
    shutil.copy(SAAO, frame)
    err = _reduce(workdir, capsys, str(frame))
    header = fits.getheader(workdir / "saao_a8280271_cal.fits")
    # GAIN = 1.9 / e-/ADU and RDNOISE = 5.0 are the frame's own cards.
    assert header["PHGAIN"] == 1.9 and header["PHGAINSR"] == "GAIN"
    assert header["PHRDNOIS"] == 5.0
    assert "assumed" not in err and "frame None" not in err
    # Overscan BIASSEC [4:13,1:520] subtracted, TRIMSEC [17:528,1:520] kept: 512 x 520.
    assert header["CALSTAT"].startswith("O") and "no master bias" not in err
    assert 150 < header["OVERSCAN"] < 250  # the raw sky sits at ~190-1700 ADU
    assert header["NAXIS1"] == 512 and header["NAXIS2"] == 520 and header["LTV1"] == -16
    data = fits.getdata(workdir / "saao_a8280271_cal.fits")
    raw = fits.getdata(SAAO).astype(np.float64)
    # The overscan level is the strip's median, and what is left is the sky above the bias.
    assert header["OVERSCAN"] == pytest.approx(np.median(raw[:, 3:13]), abs=2.0)
    assert np.median(data) == pytest.approx(np.median(raw[:, 16:528]) - header["OVERSCAN"], abs=2.0)

    catalog = Table.read(workdir / "saao_a8280271_cat.fits")
    assert catalog.meta["PIXORIGN"] == 1 and str(catalog["x"].unit) == "pix"
    assert str(catalog["flux"].unit) == "adu"
    # One FWHM everywhere: header, catalog and the unflagged stars' median agree.
    stars = catalog[(catalog["source_class"] == "star") & (catalog["flags"] == 0)]
    assert header["FWHM"] == pytest.approx(catalog.meta["FWHM_PX"], abs=1e-3)
    assert header["FWHM"] == pytest.approx(np.nanmedian(np.asarray(stars["fwhm_px"])), rel=0.05)
    # The three bright stars are ~8 px wide, wider than any training frame: still stars.
    bright = catalog[catalog["snr"] > 100]
    assert len(bright) >= 2 and set(bright["source_class"]) == {"star"}
    # The sharp single-pixel events are this 150 s frame's cosmic rays, and called so.
    sharp = catalog[(catalog["npix"] < 40) & (catalog["snr"] > 20)]
    assert Counter(sharp["source_class"]).most_common(1)[0][0] == "cosmic_ray"


def test_panoptes_colour_frame(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = workdir / POCS.name
    shutil.copy(POCS, frame)
    err = _reduce(workdir, capsys, str(frame))
    # .fits.fz in, name_cal.fits out (not name.fits.fz_cal.fits).
    calibrated, catalog_path = workdir / "pocs_solved_cal.fits", workdir / "pocs_solved_cat.fits"
    assert calibrated.is_file() and catalog_path.is_file()
    header = fits.getheader(calibrated)
    assert header["PHGAINSR"] == "assumed" and "1 e-/ADU assumed; errors approximate" in err
    # FILTER = 'RGGB' read top-down; stored bottom-up its first row is G B: the pixels say so.
    assert header["DEMOSAIC"] == "GBRG"
    catalog = Table.read(catalog_path)
    assert {"flux_red", "flux_blue", "flux_red_err", "flux_blue_err"} <= set(catalog.colnames)
    classes = Counter(catalog["source_class"])
    # Measured as one mono image a quarter of the detections were "cosmic rays"; on the green
    # plane almost none are (a 120 s DSLR frame has a few).
    assert classes["cosmic_ray"] < 0.01 * len(catalog)
    assert classes["star"] > 0.8 * len(catalog)
    star_like = _star_like(catalog, header["FWHM"])
    assert star_like.sum() > 50
    called = Counter(catalog["source_class"][star_like])
    assert called["star"] >= 0.95 * star_like.sum(), called
    # Blended groups got PSF-fitted fluxes (the default psf_fit), isolated stars none.
    grouped = np.asarray(catalog["psf_group_size"]) > 1
    assert grouped.sum() > 20 and np.isfinite(catalog["flux_psf"][grouped]).mean() > 0.9
    assert not np.isfinite(catalog["flux_psf"][~grouped]).any()
    # Red and blue are measured where green found the stars: positive for bright stars.
    bright = catalog[catalog["snr"] > 100]
    assert np.median(bright["flux_red"]) > 0 and np.median(bright["flux_blue"]) > 0


def _green_references(path: Path) -> Table:
    """Reference stars from the frame's own plate solution, measured without the pipeline.

    Green pixels only (the main diagonal of each 2x2 cell, where the pixels put green), summed
    per cell; SEP's isophotal barycentres of those cells, mapped through the original
    astrometry.net TAN-SIP solution.
    """
    with fits.open(path) as hdul:
        data = hdul[1].data.astype(np.float32)
        wcs = _wcs(hdul[1].header)
    cells = np.ascontiguousarray(data[0::2, 0::2] + data[1::2, 1::2])
    background = sep.Background(cells)
    found = sep.extract(cells - background.back(), 8.0, err=background.globalrms, minarea=3)
    found = found[found["flag"] == 0]
    # Cell (i, j) covers pixels 2i..2i+1: its centre is 2i + 0.5 in the frame.
    ra, dec = wcs.all_pix2world(2.0 * found["x"] + 0.5, 2.0 * found["y"] + 0.5, 0)
    return Table({"ra": ra, "dec": dec, "V": 25.0 - 2.5 * np.log10(found["flux"])})


def test_panoptes_wcs_recovered_from_a_perturbed_start(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    references = _green_references(POCS)
    assert len(references) > 300
    references.write(workdir / "refs.csv")
    with fits.open(POCS) as hdul:
        raw, original = hdul[1].data, hdul[1].header.copy()
    # Move the pointing 4' east and 3' south and turn the field by a degree.
    perturbed = original.copy()
    turn = np.radians(1.0)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    cd = np.array([[original["CD1_1"], original["CD1_2"]], [original["CD2_1"], original["CD2_2"]]])
    for (i, j), value in np.ndenumerate(rotation @ cd):
        perturbed[f"CD{i + 1}_{j + 1}"] = value
    perturbed["CRVAL1"] += 4.0 / 60.0 / np.cos(np.radians(original["CRVAL2"]))
    perturbed["CRVAL2"] -= 3.0 / 60.0
    fits.CompImageHDU(raw, header=perturbed).writeto(workdir / "moved.fits.fz")

    err = _reduce(workdir, capsys, "--catalog", str(workdir / "refs.csv"), "moved.fits.fz")
    assert "astrometry failed" not in err
    solved = _wcs(fits.getheader(workdir / "moved_cal.fits"))
    grid = np.linspace(0, 699, 15)
    x, y = np.meshgrid(grid, grid)
    ra, dec = _wcs(original).all_pix2world(x, y, 0)
    x_back, y_back = solved.all_world2pix(ra, dec, 0)
    dx, dy = x_back - x, y_back - y
    # The geometry (scale, rotation, distortion) comes back to 0.15 px across the frame. What
    # remains is one shift of ~0.2 px: the pipeline's windowed centroids and the barycentres
    # of the references differ by that much on this frame's asymmetric DSLR star images.
    assert np.hypot(dx - dx.mean(), dy - dy.mean()).max() < 0.15
    assert np.hypot(dx.mean(), dy.mean()) < 0.25
    assert np.hypot(dx, dy).max() < 0.35


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--gain", "0"), "--gain"),
        (("--gain", "nan"), "--gain"),
        (("--gain", "Infinity"), "--gain"),
        (("--apertures", "1,two"), "--apertures: expected numbers"),
        (("--apertures", "1,-2"), "--apertures"),
        (("--apertures", ""), "--apertures"),
        (("--apertures", "1,2", "--main-aperture", "2"), "--main-aperture"),
    ],
)
def test_reduce_options_refuse_bad_values(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    assert main(["reduce", *args, str(SAAO)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (workdir / "saao_a8280271_cal.fits").exists()


def test_reduce_gain_and_apertures(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = workdir / SAAO.name
    shutil.copy(SAAO, frame)
    _reduce(workdir, capsys, "--gain", "2.5", "--apertures", "1,2,4", str(frame))
    header = fits.getheader(workdir / "saao_a8280271_cal.fits")
    assert header["PHGAIN"] == 2.5 and header["PHGAINSR"] == "config"
    catalog = Table.read(workdir / "saao_a8280271_cat.fits")
    assert {"flux_ap0", "flux_ap1", "flux_ap2"} <= set(catalog.colnames)
    assert "flux_ap3" not in catalog.colnames
    # No 1.5 FWHM listed: the first radius is the main one.
    np.testing.assert_array_equal(catalog["flux"], catalog["flux_ap0"])
    bright = catalog[catalog["snr"] > 100]
    assert (bright["flux_ap1"] > 1.05 * bright["flux_ap0"]).all()  # 2 FWHM holds more than 1
