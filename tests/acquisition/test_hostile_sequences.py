"""Sequences no daemon can run: refused at the door, failed alone, never a crash or a loop."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.daemon import Daemon
from obsctl.store.datadir import DataDir

from ..daemon_helpers import daemon_config, running_daemon

BIASES = Sequence(name="biases", steps=(ExposureStep(image_type="BIAS", count=2),))


def stored(data: Path) -> tuple[list[dict], list[dict]]:
    """Return the sequences and the failures of a data directory's exposure log."""
    db = DataDir(data).open_log(existing=True)
    try:
        return db.sequences(), db.failures()
    finally:
        db.close()


async def test_a_stored_sequence_that_no_longer_validates_fails_and_the_daemon_goes_on(
    tmp_path,
) -> None:
    data = tmp_path / "data"
    config = daemon_config(data)
    data_dir = DataDir(data)
    data_dir.create()
    db = data_dir.open_log()
    # What the daemon stored for "exposure_s": Infinity before finite numbers were required.
    inf = {"name": "inf", "steps": [{"image_type": "DARK", "exposure_s": None}]}
    db.add_sequence("inf", json.dumps(inf))
    db.add_sequence("damaged", '{"name": "damaged", "steps": [')
    db.add_sequence("not an object", "[1, 2]")
    db.add_sequence(BIASES.name, BIASES.model_dump_json())
    db.close()

    for _ in range(2):  # and again at the next start: no crash, no second try
        await Daemon(config).run(until_idle=True, install_signal_handlers=False)
        sequences, failures = stored(data)
        assert [s["state"] for s in sequences] == ["failed", "failed", "failed", "done"]
        assert [f["sequence_id"] for f in failures] == [1, 2, 3]
    assert "stored sequence 1: invalid sequence" in failures[0]["message"]
    assert "steps[0].exposure_s: Input should be a valid number" in failures[0]["message"]
    assert "not JSON" in failures[1]["message"]
    assert "not a JSON object" in failures[2]["message"]
    assert all(f["action"] == "skip" for f in failures)


async def test_the_api_refuses_non_finite_numbers(tmp_path) -> None:
    body = '{"name": "x", "steps": [{"image_type": "DARK", "exposure_s": Infinity}]}'
    async with running_daemon(daemon_config(tmp_path / "data")) as daemon:
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            url = f"{daemon.api_url}/api/sequences"
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 400
        assert daemon.state.log_db.sequences() == []


async def test_an_exposure_beyond_the_camera_fails_its_step_at_once(tmp_path) -> None:
    data = tmp_path / "data"
    config = daemon_config(data)
    assert config.simulator is not None and config.simulator.camera.exposure_max_s == 3600
    too_long = Sequence(
        name="too long",
        steps=(ExposureStep(image_type="DARK", exposure_s=5000.0), *BIASES.steps),
    )
    await Daemon(config).run([too_long], until_idle=True, install_signal_handlers=False)
    (sequence,), failures = stored(data)
    assert sequence["state"] == "incomplete"
    (failure,) = failures  # no retries, no reconnection
    assert failure["error_type"] == "InvalidDeviceValueError"
    assert failure["action"] == "skip" and failure["step_index"] == 0
    assert "exposure 5000 s is outside the camera's range 1e-05 to 3600 s" in failure["message"]
    db = DataDir(data).open_log(existing=True)
    try:
        assert [r["image_type"] for r in db.exposures()] == ["BIAS", "BIAS"]
    finally:
        db.close()
