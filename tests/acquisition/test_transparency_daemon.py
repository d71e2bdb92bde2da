"""Clouds seen in the frames pause light frames with the roof open, and the plan resumes.

A daemon on the Alpaca simulators over HTTP with a roll-off roof and a weather station whose
cloud sensor sees nothing (the cloud is a spell of the simulated sky only, as thin high cloud
can be), the per-frame pipeline on. The truth is the spell's times from the config and the
roof's own command record: light frames go on at their rate before the spell, pause within a
few frames of its start (only a probe every ``probe_every_s`` while it lasts), resume within
one probe interval of its end, and the roof is never closed.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from obsctl.acquisition.sequence import ExposureStep, Sequence
from obsctl.config import Config
from obsctl.daemon import Daemon
from obsctl.store.exposure_log import ExposureLog

from ..daemon_helpers import enclosure_config, overhead_target

#: Long enough that the pipeline (about 0.4 s a frame here, real time) keeps up with the
#: frames (1.2 s apart at the default 100x) with room for a loaded machine: a pipeline
#: slower than the frames falls further behind with every frame, and the pause comes late.
EXPOSURE_S = 120.0
PROBE_EVERY = timedelta(minutes=8)
#: The spell, from the simulated clock's start (it starts at the real time now): late enough
#: for the pipeline to have caught up with its start (its worker starting, the first frames).
SPELL_FROM, SPELL_TO = timedelta(minutes=24), timedelta(minutes=56)
#: How long into the spell frames may still go: the two frames of the median, the one under
#: way when they are measured and the pipeline's lag.
PAUSE_WITHIN = timedelta(minutes=14)
FRAMES = 28


def cloudy_config(data_dir: Path, spell: tuple[datetime, datetime]) -> Config:
    data = enclosure_config(data_dir).model_dump(mode="json", exclude_unset=True)
    # What a zero point needs, no more: the pipeline's lag is how late the clouds are seen.
    stages = ["calibrate", "photometry", "astrometry", "zeropoint"]
    data["pipeline"] |= {"enabled": True, "workers": 1, "stages": stages}
    data["safety"]["transparency"] = {
        "enabled": True,
        "frames": 2,
        "probe_every_s": PROBE_EVERY.total_seconds(),
        "probe_timeout_s": 600,
    }
    data["simulator"]["camera"] = {"width_px": 256, "height_px": 256, "readout_time_s": 0.5}
    data["simulator"]["sky"] = {
        "star_density_per_deg2": 20000.0,
        "clouds": {
            "spells": [
                {"start": spell[0].isoformat(), "end": spell[1].isoformat(), "extinction_mag": 2.5}
            ]
        },
    }
    return Config.model_validate(data)


async def test_clouds_in_the_frames_pause_lights_with_the_roof_open(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    spell = (now + SPELL_FROM, now + SPELL_TO)
    config = cloudy_config(tmp_path / "data", spell)
    daemon = Daemon(config)
    sequence = Sequence(
        name="cloudy",
        target=overhead_target(),
        steps=(ExposureStep(image_type="LIGHT", filter="V", exposure_s=EXPOSURE_S, count=FRAMES),),
    )
    commands: list[tuple[datetime, str]] = []

    async def record_roof() -> None:
        await daemon.started.wait()
        dome = daemon.simulators.observatory.dome  # type: ignore[union-attr]
        clock = dome.clock
        for name in ("open_shutter", "close_shutter"):
            command = getattr(dome, name)

            def noting(name: str = name, command: Any = command) -> None:
                commands.append((clock.now(), name))
                command()

            setattr(dome, name, noting)

    recorder = asyncio.create_task(record_roof())
    await daemon.run([sequence], until_idle=True, install_signal_handlers=False)
    await recorder
    db = ExposureLog(Path(config.data.directory) / "obsctl.sqlite")
    try:
        rows = db.query(
            "SELECT e.date_obs, m.zero_point FROM exposures e "
            "LEFT JOIN frame_metrics m ON m.exposure_id = e.id "
            "WHERE e.image_type = 'LIGHT' ORDER BY e.id"
        )
    finally:
        db.close()
    starts = [datetime.fromisoformat(r["date_obs"]).replace(tzinfo=UTC) for r in rows]
    assert len(starts) == FRAMES  # every frame of the sequence, none lost

    before = [t for t in starts if t < spell[0]]
    # Before: the sequence's own rate, about one frame per exposure and readout.
    assert len(before) >= 8
    rate = (len(before) - 1) / (before[-1] - before[0]).total_seconds()
    # Within a few frames of the spell's start (the median's frames and the pipeline's lag)
    # the lights pause: a gap of at least half a probe interval.
    in_spell = [t for t in starts if spell[0] <= t < spell[1]]
    pauses = [a for a, b in itertools.pairwise(in_spell) if b - a > PROBE_EVERY / 2]
    assert pauses and pauses[0] - spell[0] < PAUSE_WITHIN, [t - spell[0] for t in starts]
    paused = pauses[0]
    # From then to the spell's end: only probes, one per interval.
    inside = [t for t in in_spell if t > paused]
    assert len(inside) <= (spell[1] - paused) / PROBE_EVERY + 1, inside
    between = [b - a for a, b in itertools.pairwise(inside)]
    assert all(gap >= PROBE_EVERY - timedelta(seconds=EXPOSURE_S) for gap in between), inside
    # The clouds were real in the frames: the probes' zero points are down by about the
    # spell's 2.5 mag (the premise of the test, from the simulator's config).
    zps = {t: r["zero_point"] for t, r in zip(starts, rows, strict=True)}
    clear = statistics.median(zps[t] for t in before if zps[t] is not None)
    whole = [t for t in inside if t + timedelta(seconds=EXPOSURE_S) <= spell[1]]
    assert all(zps[t] is None or zps[t] < clear - 1.5 for t in whole), [zps[t] for t in inside]
    after = [t for t in starts if t >= spell[1]]
    # After: resumed within one probe interval (and the pipeline's lag) of the spell's end,
    # at the sequence's rate again.
    assert after and after[0] - spell[1] < PROBE_EVERY + timedelta(minutes=4)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(after)]
    assert max(gaps) < 3.0 / rate
    # The roof opened once, for the first frame, and did not close before the last frame
    # (it closes at shutdown): clouds are no danger.
    assert [name for t, name in commands if t <= starts[-1]] == ["open_shutter"]
