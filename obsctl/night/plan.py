"""Night plans: targets, their sequences, constraints and repetition, and calibration blocks.

A plan is TOML validated like the config (frozen pydantic models, unknown keys rejected). A
bad plan fails with the file, the target's name and the field, for example
``targets[1] (M 13).constraints.min_alt_deg: Input should be less than or equal to 90``.

Targets give J2000 coordinates or a ``catalog`` name from the small built-in list of named
objects (`NAMED_OBJECTS`); nothing is resolved over the network.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from obsctl.acquisition.sequence import MAX_EXPOSURE_S, MAX_STEPS, ExposureStep
from obsctl.config import (
    MAX_DOCUMENT_VALUES,
    HeaderText,
    NotEmpty,
    brief_repr,
    check_document_size,
    format_validation_error,
    read_toml,
)
from obsctl.errors import ConfigError, ScheduleError
from obsctl.night.ephemeris import SYNODIC_MONTH_DAYS

__all__ = [
    "GRADE_LETTERS",
    "MAX_VISIT_S",
    "NAMED_OBJECTS",
    "NIGHT_YEARS",
    "Constraints",
    "DarkBlock",
    "FlatBlock",
    "Goal",
    "MoonAvoidance",
    "NightLimits",
    "Plan",
    "PlanTarget",
    "Repeat",
    "check_filters",
    "load_plan",
    "parse_plan",
]

SUPPORTED_PLAN_VERSIONS = (1,)

#: First and last year of the nights a plan may be run or checked for: far from the ends of
#: Python's calendar, which the night's arithmetic (noon to noon, the next night) would cross.
NIGHT_YEARS = (1900, 2199)
#: Longest visit of a target (s): exposures, per-frame overheads and the slew must fit in a
#: night, which also keeps every time the schedule computes within the calendar.
MAX_VISIT_S = 86_400.0

#: Named objects a plan may use instead of coordinates: ICRS (J2000) degrees.
NAMED_OBJECTS: dict[str, tuple[float, float]] = {
    "M 1": (83.6331, 22.0145),
    "M 13": (250.4217, 36.4597),
    "M 31": (10.6847, 41.2692),
    "M 42": (83.8221, -5.3911),
    "M 45": (56.8500, 24.1167),
    "M 51": (202.4696, 47.1953),
    "M 57": (283.3963, 33.0292),
    "M 67": (132.8250, 11.8000),
    "M 81": (148.8883, 69.0653),
    "NGC 188": (12.1100, 85.2550),
    "NGC 7789": (359.3500, 56.7080),
}


def _catalog_key(name: str) -> str:
    return "".join(name.split()).upper()


_CATALOG_INDEX = {_catalog_key(k): k for k in NAMED_OBJECTS}


class _Model(BaseModel):
    # Non-finite numbers would pass every bound (see obsctl.config).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MoonAvoidance(_Model):
    """The moon-avoidance Lorentzian: the separation from the moon grows with its phase.

    ACP Scheduler's and N.I.N.A. Target Scheduler's rule (from the Berkeley Automated Imaging
    Telescope team): at a moon age of ``a`` days the target must be at least

    ``distance_deg / (1 + ((0.5 - a / P) / (width_days / P))**2)``

    degrees from the moon, ``P`` = `SYNODIC_MONTH_DAYS`. That is ``distance_deg`` at full moon
    (``a = P / 2``) and half of it ``width_days`` before or after; near new moon almost any
    separation will do. Sources: ACP Scheduler help, "Constraints" and RTML
    ``Lorentzian.Distance`` (http://bobdenny.com/ar/RefDocs/HelpFiles/ACPScheduler81Help/
    Constraints.htm: "within distance/(1+(age/width)^2) of the moon", age counted from full
    moon; "start out with distance=15 and width=6"), and Target Scheduler
    ``AstrometryUtils.GetMoonAvoidanceLorentzianSeparation`` (tcpalmer/
    nina.plugin.targetscheduler), whose form with the moon's age from new moon is used here.
    As for ``min_moon_sep_deg``, a moon below the horizon is not avoided (Target Scheduler's
    "relax" option at a minimum moon altitude of 0 deg).
    """

    distance_deg: float = Field(ge=0, le=180, description="[deg] separation needed at full moon")
    width_days: float = Field(
        gt=0,
        le=15,
        description="[days] before or after full moon, when half of distance_deg is needed",
    )

    def separation_deg(self, moon_age_days: ArrayLike) -> NDArray[np.float64]:
        """Return the separation from the moon (deg) needed at a moon age (days since new)."""
        age = np.asarray(moon_age_days, dtype=np.float64)
        p = SYNODIC_MONTH_DAYS
        # ((0.5 - a / P) / (w / P))^2 written without w / P, which underflows to 0 for a
        # vanishing width; the square then overflows to infinity away from full moon: 0 deg
        # needed, the limit.
        with np.errstate(over="ignore"):
            out: NDArray[np.float64] = self.distance_deg / (
                1.0 + ((0.5 * p - age) / self.width_days) ** 2
            )
        return out


class Constraints(_Model):
    """When a target may be observed; every given limit must hold for the whole visit."""

    min_alt_deg: float | None = Field(default=None, ge=0, le=90)
    max_airmass: float | None = Field(default=None, ge=1, le=100)
    max_sun_alt_deg: float | None = Field(
        default=None, ge=-90, le=0, description="stricter than the night's limits"
    )
    min_moon_sep_deg: float | None = Field(default=None, ge=0, le=180)
    max_moon_illumination: float | None = Field(default=None, ge=0, le=1)
    moon_avoidance: MoonAvoidance | None = Field(
        default=None,
        description="a separation from the moon that grows with its phase (ACP's Lorentzian); "
        "besides min_moon_sep_deg when both are given",
    )
    min_hour_angle_h: float | None = Field(default=None, ge=-12, le=12)
    max_hour_angle_h: float | None = Field(default=None, ge=-12, le=12)
    windows: tuple[tuple[datetime, datetime], ...] = Field(
        default=(), max_length=10_000, description="UTC [start, end] pairs; none means any time"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Constraints:
        lo, hi = self.min_hour_angle_h, self.max_hour_angle_h
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"min_hour_angle_h ({lo}) must be below max_hour_angle_h ({hi})")
        for start, end in self.windows:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("windows need UTC offsets (write e.g. 2026-11-25T21:00:00Z)")
            if start >= end:
                raise ValueError(f"window starts ({start}) after it ends ({end})")
            first, last = NIGHT_YEARS
            if start.year < first or end.year > last:
                raise ValueError(f"window {start} to {end} lies outside the years {first}-{last}")
        return self


class Repeat(_Model):
    """How often a target is visited; without a ``[repeat]`` a target is observed once.

    ``every_min`` counts from the start of one visit to the start of the next (so an hourly
    monitor is visited every 60 min whatever a visit lasts), within ``tolerance_min``: a visit
    starts when it is due or up to that much later. One started within the tolerance keeps
    the series' phase (the next one is due ``every_min`` after this one was due, so late
    starts do not add up); one started later starts a new phase. Dispatch fills the time
    before a due visit with visits that end within the tolerance, and stops a longer visit of
    a lower-priority target between two frames so that the monitor starts in time.
    """

    every_min: float | None = Field(
        default=None,
        gt=0,
        le=1440,
        description="[min] monitoring: minutes from the start of one visit to the next",
    )
    tolerance_min: float | None = Field(
        default=None,
        ge=0,
        le=720,
        description="[min] a visit may start this late; default 5 % of every_min",
    )
    per_night: int | None = Field(
        default=None, ge=1, le=10_000, description="at most this many a night"
    )
    total: int | None = Field(
        default=None, ge=1, le=1_000_000, description="at most this many visits"
    )
    until: date | None = Field(default=None, description="no visits on nights after this date")

    @model_validator(mode="after")
    def _something(self) -> Repeat:
        if (self.every_min, self.per_night, self.total, self.until) == (None,) * 4:
            raise ValueError("give every_min, per_night, total or until")
        if self.tolerance_min is not None:
            if self.every_min is None:
                raise ValueError("tolerance_min needs every_min")
            if self.tolerance_min >= self.every_min:
                raise ValueError(
                    f"tolerance_min ({self.tolerance_min:g}) must be below every_min "
                    f"({self.every_min:g})"
                )
        return self

    @property
    def tolerance_s(self) -> float:
        """How late (s) a visit may start after it is due; 0 without a cadence."""
        if self.every_min is None:
            return 0.0
        tol = self.tolerance_min if self.tolerance_min is not None else 0.05 * self.every_min
        return 60.0 * tol


#: Quality grades, best first, as the pipeline gives them (`obsctl.classify.quality`).
GRADE_LETTERS = ("A", "B", "C", "D")


class Goal(_Model):
    """Accepted frames to collect per filter, over as many nights as it takes.

    A frame counts once the pipeline accepts it: graded ``max_grade`` or better and, when
    given, at least ``min_limiting_mag`` deep. A rejected frame (graded worse, too shallow,
    failed in the pipeline) does not count, so it is taken again; a frame still waiting for
    the pipeline counts until it is graded, so that a busy pipeline does not make the
    scheduler take frames twice. Visits take only the frames still missing.
    """

    frames: int | None = Field(
        default=None, ge=1, le=1_000_000, strict=True, description="of every filter of the steps"
    )
    per_filter: dict[Annotated[HeaderText, Field(min_length=1)], Annotated[int, Field(ge=1)]] = (
        Field(default_factory=dict, max_length=64, description="frames of these filters")
    )
    max_grade: Literal["A", "B", "C", "D"] = Field(
        default="C", description="the worst quality grade accepted"
    )
    min_limiting_mag: float | None = Field(
        default=None, ge=-5, le=40, description="[mag] accepted frames reach at least this deep"
    )

    @model_validator(mode="after")
    def _some(self) -> Goal:
        if self.frames is None and not self.per_filter:
            raise ValueError("give frames (per filter of the steps) or per_filter")
        return self

    def accepted_grades(self) -> tuple[str, ...]:
        """Return the accepted grade letters (``A`` up to ``max_grade``)."""
        return GRADE_LETTERS[: GRADE_LETTERS.index(self.max_grade) + 1]


class PlanTarget(_Model):
    """A target, what to take on each visit, and when it may be observed."""

    name: HeaderText = Field(min_length=1, description="the frames' OBJECT")
    ra_deg: float | None = Field(default=None, ge=0, lt=360, description="ICRS (J2000)")
    dec_deg: float | None = Field(default=None, ge=-90, le=90, description="ICRS (J2000)")
    catalog: str | None = Field(default=None, max_length=68, description="a name of NAMED_OBJECTS")
    priority: int = Field(default=1, ge=1, le=100, description="higher is observed first")
    steps: Annotated[tuple[ExposureStep, ...], NotEmpty] = Field(max_length=MAX_STEPS)
    constraints: Constraints = Constraints()
    repeat: Repeat | None = None
    goal: Goal | None = None
    dither_arcsec: float = Field(default=0.0, ge=0, le=3600, description="[arcsec]")
    dither_px: float = Field(
        default=0.0, ge=0, le=10_000, description="[camera pixels] instead of dither_arcsec"
    )
    dither_pattern: Literal["random", "spiral"] = "random"

    @model_validator(mode="after")
    def _one_dither_unit(self) -> PlanTarget:
        if self.dither_arcsec > 0 and self.dither_px > 0:
            raise ValueError("give dither_arcsec or dither_px, not both")
        return self

    @model_validator(mode="after")
    def _position_and_lights(self) -> PlanTarget:
        given = self.ra_deg is not None, self.dec_deg is not None
        if self.catalog is not None:
            if any(given):
                raise ValueError("give either catalog or ra_deg/dec_deg, not both")
            if _catalog_key(self.catalog) not in _CATALOG_INDEX:
                raise ValueError(
                    f"catalog name {self.catalog!r} is not in the local catalog "
                    f"({', '.join(NAMED_OBJECTS)})"
                )
        elif not all(given):
            raise ValueError("give ra_deg and dec_deg (J2000 degrees) or a catalog name")
        for i, step in enumerate(self.steps):
            if step.image_type != "LIGHT":
                raise ValueError(
                    f"steps[{i}]: target steps take LIGHT frames (calibration goes in "
                    "[calibration])"
                )
        if self.goal is not None:
            filters = [s.filter for s in self.steps]
            if None in filters:
                raise ValueError("goal: every step needs a filter (goals count frames per filter)")
            extra = sorted(set(self.goal.per_filter) - set(filters))
            if extra:
                raise ValueError(
                    f"goal.per_filter: no step takes {', '.join(map(repr, extra))} "
                    f"(the steps take {', '.join(dict.fromkeys(map(str, filters)))})"
                )
        return self

    def goal_frames(self) -> dict[str, int]:
        """Return the accepted frames to collect per filter (none without a goal)."""
        if self.goal is None:
            return {}
        goal = self.goal
        out = {} if goal.frames is None else {str(s.filter): goal.frames for s in self.steps}
        return out | goal.per_filter

    @property
    def coordinates(self) -> tuple[float, float]:
        """ICRS right ascension and declination in degrees."""
        if self.catalog is not None:
            return NAMED_OBJECTS[_CATALOG_INDEX[_catalog_key(self.catalog)]]
        assert self.ra_deg is not None and self.dec_deg is not None
        return self.ra_deg, self.dec_deg

    @property
    def visit_exposure_s(self) -> float:
        """Open-shutter time of one visit in seconds."""
        return sum(s.exposure_s * s.count for s in self.steps)

    @property
    def visit_frames(self) -> int:
        """Frames in one visit."""
        return sum(s.count for s in self.steps)


class NightLimits(_Model):
    """Sun altitudes that start and end the observing night (deg)."""

    start_sun_alt_deg: float = Field(default=-12.0, ge=-30, le=0)
    end_sun_alt_deg: float = Field(default=-12.0, ge=-30, le=0)
    overhead_s: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description="[s] per frame: readout, download, filter (for planning)",
    )
    slew_s: float = Field(default=60.0, ge=0, le=3600, description="[s] per visit (for planning)")
    meridian_flip_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="[s] a German equatorial mount's meridian flip (its slew and the "
        "centring after): a visit across the meridian takes this longer (for planning); "
        "0 for a mount that does not flip",
    )
    dispatch: Literal["lookahead", "greedy"] = Field(
        default="lookahead",
        description="lookahead: prefer a visit that ends before a higher-priority one is due; "
        "greedy: the best target now, whatever comes next",
    )
    lookahead_min: float = Field(
        default=60.0, ge=0, le=720, description="[min] how far ahead dispatch looks"
    )


class FlatBlock(_Model):
    """Flats at dusk and/or dawn, of the twilight sky or of the flat panel.

    Sky flats are taken while the sun is between the two altitudes. Panel flats
    (``source = "panel"``: the cover calibrator's lamp, roof closed) are taken at the start
    of the dusk job and after the night ends, whatever the sun does.
    """

    source: Literal["sky", "panel"] = Field(
        default="sky", description="sky: twilight flats; panel: the cover calibrator's lamp"
    )
    panel_brightness_pct: float = Field(
        default=50.0, gt=0, le=100, description="[%] panel only: the lamp's first brightness"
    )
    when: tuple[Literal["dusk", "dawn"], ...] = Field(default=("dusk",), max_length=2)
    sun_alt_max_deg: float = Field(default=-1.0, ge=-20, le=10)
    sun_alt_min_deg: float = Field(default=-10.0, ge=-20, le=10)
    filters: Annotated[tuple[Annotated[HeaderText, Field(min_length=1)], ...], NotEmpty] = Field(
        max_length=64
    )
    count: int = Field(default=5, ge=1, le=1000, description="per filter")
    exposure_s: float = Field(default=1.0, gt=0, le=3600, description="[s] first guess")
    bin: int = Field(default=1, ge=1, le=16)
    flat_target_adu: float = Field(default=25000.0, gt=0, le=2**32)
    flat_tolerance: float = Field(default=0.3, gt=0, lt=1)
    min_exposure_s: float = Field(default=0.01, gt=0, le=3600, description="[s]")
    max_exposure_s: float = Field(default=30.0, gt=0, le=3600, description="[s]")
    field_ra_offset_h: float = Field(
        default=-3.0,
        ge=-12,
        le=12,
        description="[h] flat field at this hour angle (east: away from the sun)",
    )
    field_dec_deg: float = Field(default=30.0, ge=-90, le=90)

    def step(self, filter_name: str, exposure_s: float, count: int) -> ExposureStep:
        """Return the step taking ``count`` flats in a filter, first at ``exposure_s`` (s)."""
        limits = (self.min_exposure_s, self.max_exposure_s)
        return ExposureStep(
            image_type="FLAT",
            filter=filter_name,
            exposure_s=min(max(exposure_s, limits[0]), limits[1]),
            count=count,
            bin=self.bin,
            flat_target_adu=self.flat_target_adu,
            flat_tolerance=self.flat_tolerance,
            flat_min_exposure_s=limits[0],
            flat_max_exposure_s=limits[1],
            panel_brightness_pct=self.panel_brightness_pct if self.source == "panel" else None,
        )

    @model_validator(mode="after")
    def _order(self) -> FlatBlock:
        if self.sun_alt_min_deg >= self.sun_alt_max_deg:
            raise ValueError(
                f"sun_alt_min_deg ({self.sun_alt_min_deg}) must be below sun_alt_max_deg "
                f"({self.sun_alt_max_deg})"
            )
        if self.min_exposure_s > self.max_exposure_s:
            raise ValueError(
                f"min_exposure_s ({self.min_exposure_s:g}) is above max_exposure_s "
                f"({self.max_exposure_s:g})"
            )
        return self


class DarkBlock(_Model):
    """Bias and darks, after the night: darks at every exposure time of the night's lights."""

    bias_count: int = Field(default=10, ge=0, le=1000)
    dark_count: int = Field(default=5, ge=0, le=1000, description="per exposure time")
    extra_exposures_s: tuple[Annotated[float, Field(gt=0, le=MAX_EXPOSURE_S)], ...] = Field(
        default=(), max_length=100, description="[s] darks also at these"
    )
    bin: int = Field(default=1, ge=1, le=16)


class Calibration(_Model):
    """Calibration blocks of the night."""

    flats: FlatBlock | None = None
    darks: DarkBlock | None = None


class Plan(_Model):
    """A night plan."""

    version: int
    name: str = Field(min_length=1, max_length=100)
    night: NightLimits = NightLimits()
    calibration: Calibration = Calibration()
    targets: Annotated[tuple[PlanTarget, ...], NotEmpty] = Field(max_length=1000)
    requeue_failed: int = Field(
        default=1, ge=0, le=10, description="retries of a failed visit within the night"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Plan:
        seen: set[str] = set()
        for t in self.targets:
            if t.name in seen:
                raise ValueError(f"target name {t.name!r} is used twice")
            seen.add(t.name)
        limits = self.night
        for i, t in enumerate(self.targets):
            visit_s = t.visit_exposure_s + t.visit_frames * limits.overhead_s + limits.slew_s
            if visit_s > MAX_VISIT_S:
                raise ValueError(
                    f"targets[{i}]: one visit takes {visit_s / 3600:.2f} h (exposures, "
                    f"{limits.overhead_s:g} s per frame and the slew); it must fit in "
                    f"{MAX_VISIT_S / 3600:g} h"
                )
        return self

    def light_exposures_s(self) -> tuple[float, ...]:
        """Distinct light exposure times of all targets, in seconds, ascending."""
        return tuple(sorted({s.exposure_s for t in self.targets for s in t.steps}))


def _target_label(data: dict[str, Any], index: int) -> str:
    """Return ``targets[1] (M 13)`` for messages: the index and the name, when it has one.

    A name that would break the line or run on (a newline, a control character, a hundred
    characters) is shown quoted and shortened.
    """
    targets = data.get("targets")
    name = None
    if isinstance(targets, list) and index < len(targets) and isinstance(targets[index], dict):
        name = targets[index].get("name")
    if not isinstance(name, str) or not name:
        return f"targets[{index}]"
    plain = name.isprintable() and len(name) <= 50
    return f"targets[{index}] ({name if plain else brief_repr(name)})"


def parse_plan(data: dict[str, Any], *, source: str = "<plan>") -> Plan:
    """Validate a plan mapping.

    Raises
    ------
    ConfigError
        Naming the source, the target (index and name), the field and what was expected.
    """
    version = data.get("version")
    # `type(...) is int`: TOML's true equals 1 and would pass as version 1.
    if type(version) is not int or version not in SUPPORTED_PLAN_VERSIONS:
        raise ConfigError(
            f"{source}: version: expected one of {list(SUPPORTED_PLAN_VERSIONS)}, "
            f"got {brief_repr(version)}",
            path=source,
        )
    check_document_size(data, limit=MAX_DOCUMENT_VALUES, source=source, what="plan")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        text = format_validation_error(Path(source), exc, data, what="plan")
        # Put the target's name beside its index: "targets[1] (M 13).steps[0]...".
        text = re.sub(r"targets\[(\d+)\]", lambda m: _target_label(data, int(m[1])), text)
        raise ConfigError(text, path=source) from exc


def load_plan(path: str | Path) -> Plan:
    """Load and validate a plan TOML file; a `ConfigError` says what is wrong where."""
    return parse_plan(read_toml(Path(path)), source=str(path))


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_filters(plan: Plan, wheel: list[str]) -> None:
    """Raise ScheduleError naming the first target step or flat filter the wheel lacks.

    Checked when the night starts, so that a typo costs no observing time.
    """
    names = set(wheel)
    for t, target in enumerate(plan.targets):
        for s, step in enumerate(target.steps):
            if step.filter is not None and step.filter not in names:
                raise ScheduleError(
                    f"targets[{t}] ({target.name}).steps[{s}].filter: no filter "
                    f"{step.filter!r} in the wheel ({', '.join(wheel)})"
                )
    flats = plan.calibration.flats
    for name in flats.filters if flats is not None else ():
        if name not in names:
            raise ScheduleError(
                f"calibration.flats.filters: no filter {name!r} in the wheel ({', '.join(wheel)})"
            )
