"""Variable stars of the simulated sky: true light curves and their rendering."""

from __future__ import annotations

import numpy as np
import pytest

from obsctl.config import SimulatedVariableConfig
from obsctl.simulators import scenes
from obsctl.simulators.render import render_exposure
from obsctl.simulators.variables import VARIABLE_ID_BASE, VariableStar, variables_from_config


def test_shapes_have_their_amplitudes_periods_and_depths() -> None:
    t = np.linspace(0.0, 10.0, 200001)
    sine = VariableStar("s", "sine", 10.0, 10.0, mag_v=12.0, period_d=0.5, amplitude_mag=0.1)
    assert sine.delta_mag(t).max() == pytest.approx(0.1, abs=1e-6)
    assert sine.mag("V", 0.125) == pytest.approx(12.1)
    ecl = VariableStar("e", "eclipsing", 10.0, 10.0, mag_v=12.0, period_d=2.0,
                       amplitude_mag=0.5, duration_d=0.2)  # fmt: skip
    assert ecl.delta_mag(0.0) == pytest.approx(0.5) and ecl.delta_mag(1.0) == pytest.approx(0.2)
    assert ecl.delta_mag(0.5) == 0.0
    rrl = VariableStar("r", "rrlyrae", 10.0, 10.0, mag_v=12.0, period_d=0.6, amplitude_mag=0.8)
    d = rrl.delta_mag(t)
    assert d.min() == pytest.approx(0.0, abs=1e-3) and d.max() == pytest.approx(0.8, abs=1e-3)
    transit = VariableStar("t", "transit", 10.0, 10.0, mag_v=12.0, period_d=3.0, depth=0.01,
                           duration_d=0.1)  # fmt: skip
    t9 = np.linspace(0.0, 9.0, 180001)  # three whole periods
    flux = 10 ** (-0.4 * transit.delta_mag(t9))
    assert flux.min() == pytest.approx(0.99, abs=1e-9)
    # Time below 1 - depth/2 is the duration less one ingress: 0.09 d per 3 d period.
    assert np.mean(flux < 0.995) == pytest.approx(0.09 / 3.0, rel=0.02)


def test_transient_appears_rises_and_fades() -> None:
    sn = VariableStar("sn", "transient", 10.0, 10.0, mag_v=14.0, epoch_mjd=100.0, rise_d=0.5,
                      fade_d=4.0)  # fmt: skip
    assert np.isinf(sn.mag("V", 95.0))  # not there yet
    assert sn.mag("V", 100.0) == pytest.approx(14.0)
    assert sn.mag("V", 104.0) == pytest.approx(14.0 + 2.5 / np.log(10))
    assert sn.mag("R", 100.0) < sn.mag("V", 100.0) < sn.mag("B", 100.0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        VariableStar("x", "transit", 10.0, 10.0, mag_v=12.0, depth=1.5)
    with pytest.raises(ValueError, match="unknown kind"):
        VariableStar("x", "cepheid", 10.0, 10.0, mag_v=12.0)  # type: ignore[arg-type]


def test_renderer_draws_the_variable_at_its_magnitude_of_the_time() -> None:
    sensor = scenes.sensor(
        width_px=128, height_px=128, full_well_e=1e6, adu_per_offset=1, max_adu=2**31 - 1
    )
    spec = scenes.exposure(sensor, exposure_s=10, offset=0, seed=2)
    config = SimulatedVariableConfig(
        name="v", kind="sine", ra_deg=150.0, dec_deg=20.0, mag_v=12.0, period_d=1.0,
        amplitude_mag=0.2,
    )  # fmt: skip
    variables = variables_from_config([config])
    truths = []
    for mjd in (0.25, 0.75):
        scene = scenes.sky(
            ra_deg=150.0, dec_deg=20.0, seeing_arcsec=2.5, sky_e_s_px=1.0, zero_point_mag=21.0,
            density_per_deg2=0.0, mag_bright=8.0, mag_limit=19.0, variables=variables,
            time_mjd=mjd,
        )  # fmt: skip
        truths.append(render_exposure(sensor, spec, scene).stars)
    bright, faint = truths
    assert bright["id"].tolist() == [VARIABLE_ID_BASE] == faint["id"].tolist()
    assert bright["mag"][0] == pytest.approx(12.2) and faint["mag"][0] == pytest.approx(11.8)
    assert faint["flux_e"][0] / bright["flux_e"][0] == pytest.approx(10 ** (0.4 * 0.4))
