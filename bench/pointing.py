"""Focus and pointing on the simulators: autofocus accuracy, blind solves, centring.

Over Alpaca HTTP on 127.0.0.1 (the simulators in-process), 320x240 frames at 0.97 arcsec/px:

1. **Autofocus**: runs from starts spread over +-120 steps around the simulator's true best
   focus; the distance of the final position from it in units of the V's half-width (the
   truth: best_focus_steps + steps_per_c * (T - reference)), and the frames each run took.
2. **Blind solve**: a frame taken with the mount a given distance off, solved by
   `PlateSolver` (a spiral of 10 arcmin solves about the reported position) against the
   alternative in the same run: one solve whose search covers the whole error
   (`Astrometry(max_offset_arcmin=error + 5)`). Success and time of each, on 20 s frames.
3. **Centring** from a 15 arcmin error, by offset and by sync: corrections and the final
   distance of the optics from the target (the simulator's truth).

Prints figures and ratios; asserts nothing. Run: ``python bench/pointing.py``
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from datetime import UTC, datetime

from obsctl.acquisition.autofocus import Autofocus
from obsctl.acquisition.centring import Centring, PlateSolveError, PlateSolver, detect_stars
from obsctl.acquisition.sequence import Target
from obsctl.classify.model import SourceClassifier
from obsctl.clock import ScaledClock
from obsctl.config import (
    AutofocusConfig,
    Config,
    SequencerConfig,
    SimulatedCameraConfig,
    SimulatedFocuserConfig,
    SimulatedMountConfig,
    SimulatedSkyConfig,
    SimulatorConfig,
    SiteConfig,
    TelescopeConfig,
)
from obsctl.devices import DeviceSet
from obsctl.drivers.alpaca import AlpacaCamera, AlpacaClient, AlpacaFocuser, AlpacaMount
from obsctl.embedded import reference_catalog
from obsctl.frame import Frame
from obsctl.operations import Operations
from obsctl.pipeline.astrometry import Astrometry
from obsctl.simulators.mount_model import local_sidereal_time_deg
from obsctl.simulators.observatory import running_simulators
from obsctl.store.headers import FrameContext, raw_header

SITE = SiteConfig(name="Bench", latitude_deg=28.76, longitude_deg=-17.88, elevation_m=2326)
TELESCOPE = TelescopeConfig(name="Bench scope", focal_length_mm=800, aperture_mm=200)
START = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
BEST, STEPS_PER_C, REFERENCE_C, TEMPERATURE_C = 30_000.0, 40.0, 10.0, 6.0
TRUE_BEST = BEST + STEPS_PER_C * (TEMPERATURE_C - REFERENCE_C)
PX_PER_STEP = 1.0 / (2.0 * 4.0) / 3.76  # blur radius per step: 1 um steps, f/4, 3.76 um


def simulator(
    *, focus_start: int = 30_000, error: tuple[float, float] = (0.0, 0.0)
) -> SimulatorConfig:
    return SimulatorConfig(
        start="never",
        port=0,
        discovery_port=None,
        speed=200.0,
        camera=SimulatedCameraConfig(width_px=320, height_px=240, readout_time_s=0.1),
        sky=SimulatedSkyConfig(star_density_per_deg2=40_000.0, galaxies=False),
        mount=SimulatedMountConfig(
            slew_rate_deg_s=5.0, pointing_error_east_arcsec=error, pointing_error_west_arcsec=error
        ),
        focuser=SimulatedFocuserConfig(
            start_position=focus_start,
            best_focus_steps=BEST,
            reference_temperature_c=REFERENCE_C,
            temperature_c=TEMPERATURE_C,
            steps_per_c=STEPS_PER_C,
            backlash_steps=40,
            speed_steps_s=5000.0,
        ),
    )


async def _devices(port: int, clock: ScaledClock) -> tuple[AlpacaClient, DeviceSet]:
    client = AlpacaClient(f"127.0.0.1:{port}")
    devs = DeviceSet(
        camera=AlpacaCamera("camera", client, timeout_s=5.0),
        mount=AlpacaMount("mount", client, timeout_s=5.0, clock=clock),
        focuser=AlpacaFocuser("focuser", client, 0, timeout_s=5.0),
    )
    for device in devs.all():
        await device.connect()
    return client, devs


def _target(ha_deg: float = -30.0, dec_deg: float = 20.0) -> Target:
    lst = local_sidereal_time_deg(START, SITE.longitude_deg)
    return Target(name="Field", ra_deg=(lst - ha_deg) % 360.0, dec_deg=dec_deg)


async def autofocus_runs(classifier: SourceClassifier) -> None:
    settings = AutofocusConfig(
        enabled=True, exposure_s=20.0, points=7, step_steps=50, overshoot_steps=80
    )
    print("autofocus: start offset (steps) -> |final - truth| / half-width, frames")
    errors, frames = [], []
    for offset in range(-120, 121, 30):
        sim = simulator(focus_start=round(TRUE_BEST) + offset)
        clock = ScaledClock(sim.speed, start=START)
        async with running_simulators(sim, SITE, TELESCOPE, clock=clock, port=0) as sims:
            client, devs = await _devices(sims.port, clock)
            try:
                assert devs.focuser is not None and devs.mount is not None
                ops = Operations(SequencerConfig(poll_s=0.01), clock)
                target = _target()
                await ops.slew(devs.mount, target.ra_deg, target.dec_deg)
                run = await Autofocus(
                    devs.camera, devs.focuser, ops, clock, settings, classifier
                ).run("bench", "V")
            finally:
                await client.close()
        half_width = run.fit.half_width_steps if run.fit is not None else math.nan
        error = abs(run.final_position - TRUE_BEST) / half_width
        errors.append(error)
        frames.append(len(run.points) + (1 if run.check_hfr_px is not None else 0))
        print(
            f"  {offset:+5d}: {run.outcome:8s} {error:6.2%} of {half_width:.0f}, "
            f"{frames[-1]} frames"
        )
    print(
        f"  median {statistics.median(errors):.2%}, worst {max(errors):.2%} of the half-width; "
        f"frames median {statistics.median(frames):.0f}, most {max(frames)}"
    )


async def blind_solves() -> None:
    print("\nblind solve: error (arcmin) -> spiral: solved, s | one wide search: solved, s")
    for error_arcmin in (5, 15, 30, 45, 60, 75):
        e = error_arcmin * 60.0
        sim = simulator(error=(0.6 * e, 0.8 * e))
        clock = ScaledClock(sim.speed, start=START)
        config = Config.model_validate(
            {
                "version": 1,
                "site": SITE.model_dump(),
                "telescope": TELESCOPE.model_dump(),
                "devices": {"camera": {"driver": "alpaca", "address": "127.0.0.1:1"}},
                "pipeline": {"reference_catalog": "synthetic"},
                "simulator": sim.model_dump(mode="json"),
                "centring": {"enabled": True, "exposure_s": 10.0, "blind_search_arcmin": 90.0},
            }
        )
        reference = reference_catalog(config)
        assert reference is not None
        spiral = PlateSolver(reference, 10.0, 90.0)
        wide = Astrometry(reference, max_offset_arcmin=error_arcmin + 5.0, sip_degree=None)
        async with running_simulators(sim, SITE, TELESCOPE, clock=clock, port=0) as sims:
            client, devs = await _devices(sims.port, clock)
            try:
                assert devs.mount is not None
                ops = Operations(SequencerConfig(poll_s=0.01), clock)
                target = _target()
                await ops.slew(devs.mount, target.ra_deg, target.dec_deg)
                status = await devs.mount.status()
                await ops.expose(devs.camera, 20.0, light=True)
                image = await devs.camera.download()
            finally:
                await client.close()
        header = raw_header(
            FrameContext(image, "LIGHT", SITE, TELESCOPE, 0, START, "Field", "V", status)
        )
        t0 = time.perf_counter()
        try:
            spiral.solve(image.data, header)
            spiral_ok = "yes"
        except PlateSolveError as exc:
            spiral_ok = f"no ({exc})"
        spiral_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        solved = wide.process(Frame(image.data, header, sources=detect_stars(image.data)))
        wide_s = time.perf_counter() - t0
        wide_ok = "yes" if "wcs_rms_arcsec" in solved.metrics else "no"
        print(
            f"  {error_arcmin:3d}: {spiral_ok:3s} {spiral_s:6.2f} s | {wide_ok:3s} {wide_s:6.2f} s"
            f"  (time ratio {spiral_s / wide_s:.2f})"
        )


async def centring_runs() -> None:
    print("\ncentring from 15 arcmin: method, pier side -> outcome, corrections, final arcsec")
    for method in ("offset", "sync"):
        for ha in (-30.0, 30.0):
            error = (720.0, -540.0)  # 15 arcmin
            sim = simulator(error=error)
            clock = ScaledClock(sim.speed, start=START)
            config = Config.model_validate(
                {
                    "version": 1,
                    "site": SITE.model_dump(),
                    "telescope": TELESCOPE.model_dump(),
                    "devices": {"camera": {"driver": "alpaca", "address": "127.0.0.1:1"}},
                    "pipeline": {"reference_catalog": "synthetic"},
                    "simulator": sim.model_dump(mode="json"),
                    "centring": {"enabled": True, "exposure_s": 20.0, "method": method},
                }
            )
            reference = reference_catalog(config)
            assert reference is not None
            solver = PlateSolver(reference, 10.0, 60.0)
            async with running_simulators(sim, SITE, TELESCOPE, clock=clock, port=0) as sims:
                client, devs = await _devices(sims.port, clock)
                try:
                    assert devs.mount is not None
                    ops = Operations(SequencerConfig(poll_s=0.01), clock)
                    target = _target(ha)
                    await ops.slew(devs.mount, target.ra_deg, target.dec_deg)
                    t0 = time.perf_counter()
                    run = await Centring(devs.camera, devs.mount, ops, clock, config, solver).run(
                        target, "V"
                    )
                    took = time.perf_counter() - t0
                    mount = sims.server.observatory.mount
                    east, north = mount.pointing_error_arcsec()
                    p = mount.pointing()
                finally:
                    await client.close()
            cos_dec = math.cos(math.radians(target.dec_deg))
            d_east = ((p.ra_deg - target.ra_deg + 180) % 360 - 180) * cos_dec * 3600 + east
            d_north = (p.dec_deg - target.dec_deg) * 3600 + north
            print(
                f"  {method:6s} HA {ha:+.0f}: {run.outcome}, {run.corrections} correction(s), "
                f"{math.hypot(d_east, d_north):.1f} arcsec off; {took:.1f} s real"
                + (f" ({run.reason})" if run.reason else "")
            )


async def main() -> None:
    classifier = SourceClassifier()
    await autofocus_runs(classifier)
    await blind_solves()
    await centring_runs()


if __name__ == "__main__":
    asyncio.run(main())
