"""Valid sequences, plans and configs for the fuzz suite (which crosses rooms, mirroring none).

Each is drawn from its model's JSON schema (`documents.from_schema`), then completed with the
rules between fields that no schema states: a LIGHT step needs an exposure and its sequence a
target, a plan's targets take LIGHT frames only, fit a visit in a day, give a goal some
frames and a cadence tolerance a longer cadence, a serial device suits its role, a weather
limit has one side, only flats come from the flat panel, ranges (cloud spells, weather
scenarios, transparency thresholds) run low to high.
`tests/fuzz/test_parsers.py` checks that every document drawn here is accepted, so these rules
stay the models' own.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st

from obsctl.acquisition.sequence import Sequence
from obsctl.config import Config
from obsctl.devices import ROLES
from obsctl.night.plan import MAX_VISIT_S, NAMED_OBJECTS, Plan

from .documents import from_schema

__all__ = ["configs", "plans", "sequences"]

Doc = dict[str, Any]


def _ordered(doc: Doc, low: str, high: str, default_low: float, default_high: float) -> None:
    """Make ``doc[low] <= doc[high]``, filling in the model's defaults to compare."""
    a, b = doc.get(low), doc.get(high)
    a, b = default_low if a is None else a, default_high if b is None else b
    if a > b:
        doc[low], doc[high] = b, a


def _utc(value: datetime | str) -> datetime:
    """Return a drawn date-time with a UTC offset (a naive one is taken as UTC)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _step(step: Doc, *, light: bool = False) -> Doc:
    if light:
        step["image_type"] = "LIGHT"
    if step.get("image_type", "LIGHT") != "BIAS" and step.get("exposure_s", 0.0) <= 0:
        step["exposure_s"] = 1.0
    _ordered(step, "flat_min_exposure_s", "flat_max_exposure_s", 0.01, 60.0)
    if step.get("image_type", "LIGHT") != "FLAT":  # the flat panel lights flats only
        step.pop("panel_brightness_pct", None)
    return step


def _one_dither(doc: Doc) -> None:
    """Keep one dither amplitude: arcsec or pixels, not both."""
    if (doc.get("dither_arcsec") or 0) > 0 and (doc.get("dither_px") or 0) > 0:
        doc.pop("dither_px")


def _sequence(doc: Doc) -> Doc:
    _one_dither(doc)
    for step in doc["steps"]:
        _step(step)
    if doc.get("target") is None:
        for step in doc["steps"]:
            if step.get("image_type", "LIGHT") == "LIGHT":
                step["image_type"] = "DARK"  # a calibration sequence, without a target
    return doc


def _target(target: Doc, index: int, names: set[str], night: Doc) -> Doc:
    _one_dither(target)
    for step in target["steps"]:
        _step(step, light=True)
    if target.get("catalog") is not None:
        # A name of the local catalog, in the spelling drawn (any spacing and case is taken).
        known = sorted(NAMED_OBJECTS)
        target["catalog"] = known[len(target["catalog"]) % len(known)].lower()
        target.pop("ra_deg", None)
        target.pop("dec_deg", None)
    else:
        target.pop("catalog", None)
        for key in ("ra_deg", "dec_deg"):
            if target.get(key) is None:
                target[key] = 0.0
    if target["name"] in names:
        target["name"] = f"{target['name']}#{index}"[-200:]
    names.add(target["name"])
    constraints = target.get("constraints", {})
    _ordered(constraints, "min_hour_angle_h", "max_hour_angle_h", -12, 12)
    if constraints.get("min_hour_angle_h") == constraints.get("max_hour_angle_h") is not None:
        constraints.pop("min_hour_angle_h")
    if "windows" in constraints:
        constraints["windows"] = [sorted(w) for w in constraints["windows"] if w[0] != w[1]]
    repeat = target.get("repeat")
    if repeat is not None:
        if all(repeat.get(k) is None for k in ("every_min", "per_night", "total", "until")):
            repeat["every_min"] = 60.0
        tolerance = repeat.get("tolerance_min")
        if tolerance is not None:  # a tolerance needs a longer cadence
            every = repeat.get("every_min") or 60.0
            repeat["every_min"] = every
            if tolerance >= every:
                repeat["tolerance_min"] = every / 2
    goal = target.get("goal")
    if goal is not None:  # goals count frames per filter of the steps
        for step in target["steps"]:
            step["filter"] = step.get("filter") or "V"
        filters = {step["filter"] for step in target["steps"]}
        per_filter = goal.get("per_filter") or {}
        goal["per_filter"] = {f: n for f, n in per_filter.items() if f in filters}
        if goal.get("frames") is None and not goal["per_filter"]:
            goal["frames"] = 1
    per_frame = night.get("overhead_s", 20.0)
    visit = night.get("slew_s", 60.0) + sum(
        (s["exposure_s"] + per_frame) * s.get("count", 1) for s in target["steps"]
    )
    if visit > MAX_VISIT_S:  # one frame a step, of at most ten minutes, fits with any overhead
        for step in target["steps"]:
            step["count"] = 1
            step["exposure_s"] = min(step["exposure_s"], 600.0)
    return target


def _plan(doc: Doc) -> Doc:
    doc["version"] = 1
    names: set[str] = set()
    night = doc.get("night", {})
    for i, target in enumerate(doc["targets"]):
        _target(target, i, names, night)
    flats = (doc.get("calibration") or {}).get("flats") or {}
    _ordered(flats, "sun_alt_min_deg", "sun_alt_max_deg", -10.0, -1.0)
    if flats.get("sun_alt_min_deg", -10.0) == flats.get("sun_alt_max_deg", -1.0):
        flats["sun_alt_min_deg"] = flats.get("sun_alt_max_deg", -1.0) - 1.0
    _ordered(flats, "min_exposure_s", "max_exposure_s", 0.01, 30.0)
    return doc


_SERIAL_ROLE = {"filter_wheel": "qhycfw", "mount": "lx200"}


def _device(device: Doc | None, role: str) -> Doc | None:
    if device is None:
        return None
    if device["driver"] == "serial" and role not in _SERIAL_ROLE:
        device = {"driver": "alpaca", "address": ""}
    if device["driver"] == "alpaca":
        device["address"] = "127.0.0.1:1"  # nothing listens: commands fail fast
        if role != "mount":
            device.pop("equatorial_system", None)  # a mount's key only
    if device["driver"] == "serial":
        device["protocol"] = _SERIAL_ROLE[role]
        names = device.get("filter_names", [])
        if role != "filter_wheel":
            device.pop("filter_names", None)
            device.pop("focus_offsets", None)
        elif "focus_offsets" in device:
            device["focus_offsets"] = (device["focus_offsets"] * len(names))[: len(names)]
    return device


def _config(doc: Doc) -> Doc:
    doc["version"] = 1
    devices = doc["devices"]
    for role in ROLES:
        if role in devices:
            devices[role] = _device(devices[role], role)
    simulated = any((d or {}).get("driver") == "simulator" for d in devices.values())
    if simulated and doc.get("simulator") is None:
        doc["simulator"] = {}
    # A simulated enclosure, station, flat panel or focuser needs its section.
    for role in ("dome", "weather", "cover_calibrator", "focuser"):
        if (devices.get(role) or {}).get("driver") == "simulator" and not doc["simulator"].get(
            role
        ):
            doc["simulator"][role] = {}
    focuser = (doc.get("simulator") or {}).get("focuser")
    if focuser:  # its start and best focus lie on its travel
        top = focuser.get("max_step", 60_000)
        for key, default in (("start_position", 30_000), ("best_focus_steps", 30_500.0)):
            focuser[key] = min(focuser.get(key, default), top)
    server = doc.get("server", {})
    server["host"] = "127.0.0.1"  # loopback, where no token is required
    token = server.get("token")
    if token is not None and not (token.isascii() and token.isprintable() and token.strip()):
        server["token"] = "t0ken"
    if token is not None and " " in server["token"]:
        server["token"] = server["token"].replace(" ", "")
    if "allowed_hosts" in server:
        server["allowed_hosts"] = ["obs.example.org", "192.0.2.10"]
    # A drawn horizon path names no file: the daemon would refuse to plan or simulate.
    doc.get("site", {}).pop("horizon", None)
    pipeline = doc.get("pipeline", {})
    if "stages" in pipeline:
        pipeline["stages"] = list(dict.fromkeys(pipeline["stages"]))
    if pipeline.get("main_aperture") is not None:
        pipeline["main_aperture"] %= len(pipeline.get("aperture_fwhm", [1.0, 1.5, 2.0, 3.0]))
    sinks = doc.get("monitoring", {}).get("sinks", []) + doc.get("notifications", {}).get(
        "sinks", []
    )
    for sink in sinks:
        if sink["kind"] == "webhook":
            sink["url"] = "http://127.0.0.1:1/" + sink["url"]
    flip = doc.get("meridian_flip")
    if flip:  # the limit after the flip time
        a, b = flip.get("flip_after_min", 5.0), flip.get("limit_after_min", 15.0)
        if b <= a:
            flip["flip_after_min"], flip["limit_after_min"] = min(a, b) / 2.0, max(a, b, 1.0)
    simulator = doc.get("simulator") or {}
    camera = simulator.get("camera", {})
    _ordered(camera, "exposure_min_s", "exposure_max_s", 1e-5, 3600.0)
    _ordered(camera, "gain_min", "gain_max", 0, 300)
    _ordered(camera, "offset_min", "offset_max", 0, 100)
    # Bad columns must fit on the sensor (1024 columns unless drawn).
    width = camera.get("width_px", 1024)
    if camera.get("dead_columns", 1) + camera.get("hot_columns", 1) > width:
        camera["dead_columns"], camera["hot_columns"] = 0, 0
    for limit in doc.get("safety", {}).get("weather", {}).get("limits", []):
        if (limit.get("above") is None) == (limit.get("below") is None):  # exactly one side
            limit["below"] = None
            limit["above"] = limit.get("above") or 0.0
    clouds = doc.get("safety", {}).get("transparency", {})  # resume above the pause
    _ordered(clouds, "pause_below", "resume_above", 0.5, 0.7)
    if clouds.get("pause_below", 0.5) == clouds.get("resume_above", 0.7):
        clouds["pause_below"] = clouds.get("resume_above", 0.7) / 2
    sky = simulator.get("sky", {})
    _ordered(sky, "mag_bright", "mag_limit", 8.0, 19.5)
    if sky.get("mag_bright", 8.0) == sky.get("mag_limit", 19.5):
        sky["mag_bright"] = sky["mag_limit"] - 1
    _ordered(sky, "galaxy_mag_bright", "galaxy_mag_limit", 12.0, 21.0)
    if sky.get("galaxy_mag_bright", 12.0) == sky.get("galaxy_mag_limit", 21.0):
        sky["galaxy_mag_bright"] = sky.get("galaxy_mag_limit", 21.0) - 1
    scenario = (simulator.get("weather") or {}).get("scenario") or []
    for change in scenario:  # UTC times, in time order
        change["at"] = _utc(change["at"])
    scenario.sort(key=lambda change: change["at"])
    for spell in sky.get("clouds", {}).get("spells", []):  # UTC times, start before end
        start, end = (_utc(spell[k]) for k in ("start", "end"))
        spell["start"], spell["end"] = min(start, end), max(start, end)
        if start == end:
            spell["end"] = end + timedelta(hours=1)
    for entry in sky.get("transients", []):  # its host one way; its kind's own fields
        if entry.get("host_id") is not None:
            entry.pop("ra_deg", None)
            entry.pop("dec_deg", None)
        else:
            entry.pop("host_id", None)
            entry["ra_deg"] = 150.0 if entry.get("ra_deg") is None else entry["ra_deg"]
            entry["dec_deg"] = 20.0 if entry.get("dec_deg") is None else entry["dec_deg"]
        if entry["kind"] == "supernova":
            entry["mag_v"] = 15.0 if entry.get("mag_v") is None else entry["mag_v"]
        else:
            entry.pop("mag_v", None)
            entry["offset_arcsec"] = 0.0
            entry["amplitude_mag"] = entry.get("amplitude_mag") or 1.0
    difference = doc.get("difference", {})
    _ordered(difference, "min_reference_frames", "reference_frames", 4, 8)
    _ordered(difference, "min_rate_arcsec_min", "max_rate_arcsec_min", 1.0, 90.0)
    if difference.get("min_rate_arcsec_min", 1.0) == difference.get("max_rate_arcsec_min", 90.0):
        difference["max_rate_arcsec_min"] = difference.get("min_rate_arcsec_min", 1.0) * 2
    if "trail_mag_per_arcsec" in sky:
        sky["trail_mag_per_arcsec"] = sorted(sky["trail_mag_per_arcsec"])
    dome = doc.get("dome", {})  # the telescope stands inside the dome
    axes = (dome.get(f"mount_offset_{a}_m", 0.0) for a in ("north", "east", "up"))
    reach = math.hypot(*axes) + dome.get("gem_offset_m", 0.0)
    if reach >= dome.get("radius_m", 2.5):
        dome["radius_m"] = min(100.0, reach + 1.0)
    wheel = simulator.get("filter_wheel")
    if wheel is not None:
        names = wheel.setdefault("names", ["L", "B", "V", "R", "I"])
        offsets = wheel.get("focus_offsets", [0, 35, 20, 10, -15]) or [0]
        wheel["focus_offsets"] = (offsets * len(names))[: len(names)]
    return doc


@cache
def sequences() -> st.SearchStrategy[Doc]:
    """Return a strategy for valid sequence documents."""
    return from_schema(Sequence.model_json_schema()).map(_sequence)


@cache
def plans() -> st.SearchStrategy[Doc]:
    """Return a strategy for valid plan documents."""
    return from_schema(Plan.model_json_schema()).map(_plan)


@cache
def configs() -> st.SearchStrategy[Doc]:
    """Return a strategy for valid configuration documents."""
    return from_schema(Config.model_json_schema()).map(_config)
