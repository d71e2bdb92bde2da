"""Fetch the reference stars of a plan's fields into the local catalogue, once.

`fetch_fields` asks a provider for each field's cone (the camera's field plus a margin) and
stores the stars (`obsctl.store.refcat.RefCatalog.insert_stars`, bands completed by
`obsctl.catalogs.bands.complete_bands`) with a record of the cone, so that a field already
covered is skipped. A cone whose answer overflows MAXREC is split into seven cones of half
its radius (a hexagonal cover), twice at most. A service that does not answer stops the
fetch: the other fields would wait for the same timeout.

`requeue_covered` queues again, through the processing queue, the light frames that were
flagged for lack of reference stars and lie in a newly fetched cone. `start_prefetch` is the
night runner's entry: a background task, so no frame ever waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from astropy.table import Table

from obsctl.catalogs.bands import complete_bands
from obsctl.catalogs.providers import (
    PROVIDERS,
    ApassVizier,
    AtlasVizier,
    CatalogProvider,
    GaiaTap,
)
from obsctl.config import Config
from obsctl.errors import (
    CatalogError,
    CatalogOverflowError,
    CatalogUnreachableError,
    ConfigError,
    ObsctlError,
)
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.store.refcat import BANDS, MOTION_COLUMNS, RefCatalog


class _Target(Protocol):
    """A plan's target, as far as a fetch needs it."""

    @property
    def name(self) -> str: ...

    @property
    def coordinates(self) -> tuple[float, float]:
        """ICRS right ascension and declination (deg)."""
        ...


class Plan(Protocol):
    """A night plan (`obsctl.night.plan.Plan`), as far as a fetch needs it: its targets.

    A protocol, not the class: the night runner starts the prefetch, so this room must not
    import the night's.
    """

    @property
    def targets(self) -> Sequence[_Target]: ...


__all__ = [
    "NO_REFERENCE_FLAG",
    "FetchReport",
    "Field",
    "fetch_fields",
    "field_radius_deg",
    "make_provider",
    "plan_fields",
    "prefetch_plan",
    "requeue_covered",
    "start_prefetch",
    "store_table",
]

log = logging.getLogger(__name__)

#: Text of the astrometry stage's flag for a field without reference stars.
NO_REFERENCE_FLAG = "no reference stars around the field"
# How often an overflowing cone is split (7 then 49 cones) before giving up.
_MAX_SPLITS = 2
# Sub-cones of a split: radius and centre distance as fractions of the parent's radius. Seven
# circles of radius 1/2 centred at 0 and at sqrt(3)/2 in six directions cover the unit disc;
# 0.52 leaves room for the sphere's curvature.
_SPLIT_RADIUS = 0.52
_SPLIT_DISTANCE = math.sqrt(3.0) / 2.0
# Background prefetch tasks, kept referenced until they end.
_TASKS: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class Field:
    """A field to fetch: a name and a cone (deg)."""

    name: str
    ra_deg: float
    dec_deg: float
    radius_deg: float


@dataclass
class FetchReport:
    """What a fetch did."""

    provider: str
    fetched: list[Field] = field(default_factory=list)
    skipped: list[Field] = field(default_factory=list)
    failed: list[tuple[Field, str]] = field(default_factory=list)
    stars: int = 0
    requeued: int = 0
    unreachable: str | None = None


def make_provider(config: Config, name: str | None = None) -> CatalogProvider:
    """Return the named provider (default: ``[catalogs] provider``) with the config's URLs.

    Raises
    ------
    ConfigError
        When no provider is named and the config's is ``"none"``.
    """
    cat = config.catalogs
    chosen = name or cat.provider
    if chosen == "none" or chosen not in PROVIDERS:
        raise ConfigError(
            "catalogs.provider: no catalogue provider; set [catalogs] provider or pass "
            "--provider gaia|apass|atlas"
        )
    timeout_s, max_rows = cat.timeout_s, cat.max_rows
    if chosen == "gaia":
        return GaiaTap(url=cat.gaia_url, timeout_s=timeout_s, max_rows=max_rows)
    if chosen == "apass":
        return ApassVizier(url=cat.vizier_url, timeout_s=timeout_s, max_rows=max_rows)
    return AtlasVizier(url=cat.vizier_url, timeout_s=timeout_s, max_rows=max_rows)


def field_radius_deg(config: Config, margin_deg: float | None = None) -> float:
    """Return the radius of the cone holding the camera's field plus a margin (deg).

    The field's half diagonal is the sensor size times the pixel size over the focal length.
    The sensor comes from ``[catalogs] width_px``, ``height_px``, ``pixel_size_um``, else
    from the simulated camera.

    Raises
    ------
    ConfigError
        When neither gives the sensor.
    """
    cat = config.catalogs
    sim = config.simulator.camera if config.simulator is not None else None
    width = cat.width_px or (sim.width_px if sim else None)
    height = cat.height_px or (sim.height_px if sim else None)
    pixel = cat.pixel_size_um or (sim.pixel_size_um if sim else None)
    if width is None or height is None or pixel is None:
        raise ConfigError(
            "catalogs.width_px, height_px, pixel_size_um: the camera's field is unknown; "
            "give the sensor in [catalogs]"
        )
    half_diagonal_mm = 0.5 * math.hypot(width, height) * pixel * 1e-3
    radius = math.degrees(math.atan(half_diagonal_mm / config.telescope.focal_length_mm))
    return radius + (cat.margin_deg if margin_deg is None else margin_deg)


def plan_fields(plan: Plan, radius_deg: float) -> list[Field]:
    """Return one cone per target of a plan."""
    out = []
    for target in plan.targets:
        ra, dec = target.coordinates
        out.append(Field(target.name, ra, dec, radius_deg))
    return out


def store_table(catalog: RefCatalog, provider: CatalogProvider, table: Table) -> int:
    """Store a provider's table (bands completed) under the provider's catalogue name."""
    full = complete_bands(table)
    mags: dict[str, np.ndarray] = {}
    errors: dict[str, np.ndarray] = {}
    for band, columns in BANDS.items():
        if len(columns) != 1 or band not in full.colnames:
            continue  # "L" is derived when read
        mags[columns[0]] = np.asarray(full[band], dtype=np.float64)
        if band + "_err" in full.colnames:
            errors[columns[0]] = np.asarray(full[band + "_err"], dtype=np.float64)
    motion = {
        c: np.asarray(full[c], dtype=np.float64) for c in MOTION_COLUMNS if c in full.colnames
    }
    return catalog.insert_stars(
        provider.catalog,
        np.asarray(full["source_id"]),
        np.asarray(full["ra_deg"], dtype=np.float64),
        np.asarray(full["dec_deg"], dtype=np.float64),
        mags,
        errors,
        where=f"{provider.name} TAP answer",
        motion=motion,
    )


def _offset(
    ra_deg: float, dec_deg: float, distance_deg: float, bearing_deg: float
) -> tuple[float, float]:
    """Return the point ``distance_deg`` from a centre towards a bearing (east of north), deg."""
    d, b = math.radians(distance_deg), math.radians(bearing_deg)
    dec0 = math.radians(dec_deg)
    dec = math.asin(math.sin(dec0) * math.cos(d) + math.cos(dec0) * math.sin(d) * math.cos(b))
    ra = math.radians(ra_deg) + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(dec0), math.cos(d) - math.sin(dec0) * math.sin(dec)
    )
    return math.degrees(ra) % 360.0, math.degrees(dec)


def _fetch_cone(
    catalog: RefCatalog,
    provider: CatalogProvider,
    cone: Field,
    *,
    mag_limit: float,
    bright_limit: float | None,
    depth: int = 0,
) -> int:
    """Fetch and store one cone (split when it overflows); record it; return stars stored."""
    try:
        table = provider.cone(
            cone.ra_deg,
            cone.dec_deg,
            cone.radius_deg,
            mag_limit=mag_limit,
            bright_limit=bright_limit,
        )
        stored = store_table(catalog, provider, table)
    except CatalogOverflowError as exc:
        if depth >= _MAX_SPLITS:
            raise CatalogOverflowError(
                f"cone of {cone.radius_deg:.4f} deg at ({cone.ra_deg:.4f}, {cone.dec_deg:.4f}) "
                f"still truncated after {depth} splits: lower [catalogs] mag_limit or raise "
                "max_rows",
                provider=provider.name,
            ) from exc
        log.info("%s: %s; splitting the cone", provider.name, exc)
        radius = cone.radius_deg * _SPLIT_RADIUS
        parts = [Field(cone.name, cone.ra_deg, cone.dec_deg, radius)] + [
            Field(
                cone.name,
                *_offset(cone.ra_deg, cone.dec_deg, cone.radius_deg * _SPLIT_DISTANCE, 60.0 * k),
                radius,
            )
            for k in range(6)
        ]
        stored = sum(
            _fetch_cone(
                catalog,
                provider,
                part,
                mag_limit=mag_limit,
                bright_limit=bright_limit,
                depth=depth + 1,
            )
            for part in parts
        )
    catalog.add_cone(
        provider.name,
        cone.ra_deg,
        cone.dec_deg,
        cone.radius_deg,
        mag_limit=mag_limit,
        n_stars=stored,
        fetched_utc=datetime.now(UTC).isoformat(),
    )
    return stored


def fetch_fields(
    catalog: RefCatalog,
    provider: CatalogProvider,
    fields: Iterable[Field],
    *,
    mag_limit: float,
    bright_limit: float | None = None,
) -> FetchReport:
    """Fetch each field not yet covered by an earlier fetch of the same provider.

    A `CatalogUnreachableError` stops the fetch (``report.unreachable``); any other
    `CatalogError` is recorded for its field and the next field is tried.
    """
    report = FetchReport(provider.name)
    for cone in fields:
        if catalog.covered(provider.name, cone.ra_deg, cone.dec_deg, cone.radius_deg, mag_limit):
            log.info("%s: %s already in the catalogue, skipped", provider.name, cone.name)
            report.skipped.append(cone)
            continue
        try:
            n = _fetch_cone(catalog, provider, cone, mag_limit=mag_limit, bright_limit=bright_limit)
        except CatalogUnreachableError as exc:
            report.unreachable = str(exc)
            report.failed.append((cone, str(exc)))
            log.warning("catalogue fetch stopped: %s", exc)
            break
        except CatalogError as exc:
            report.failed.append((cone, str(exc)))
            log.warning("%s: %s", cone.name, exc)
            continue
        report.fetched.append(cone)
        report.stars += n
        log.info("%s: %s: %d stars", provider.name, cone.name, n)
    return report


def requeue_covered(
    log_db: ExposureLog, cones: Sequence[Field], enqueue: Callable[[int], None]
) -> int:
    """Queue again the flagged frames (no reference stars) whose pointing is in a cone.

    Returns how many were queued.
    """
    if not cones:
        return 0
    count = 0
    for night in log_db.nights():
        for exposure_id in log_db.lights_flagged(str(night["night"]), NO_REFERENCE_FLAG):
            row = log_db.exposure(exposure_id)
            if row is None or row.get("ra_deg") is None or row.get("dec_deg") is None:
                continue
            ra, dec = float(row["ra_deg"]), float(row["dec_deg"])
            if any(_inside(ra, dec, cone) for cone in cones):
                enqueue(exposure_id)
                count += 1
    if count:
        log.info("%d frame(s) without reference stars queued again", count)
    return count


def _inside(ra_deg: float, dec_deg: float, cone: Field) -> bool:
    d1, d2 = math.radians(dec_deg), math.radians(cone.dec_deg)
    hav = (
        math.sin((d2 - d1) / 2) ** 2
        + math.cos(d1) * math.cos(d2) * math.sin(math.radians(cone.ra_deg - ra_deg) / 2) ** 2
    )
    return 2 * math.asin(min(1.0, math.sqrt(hav))) <= math.radians(cone.radius_deg)


def prefetch_plan(
    config: Config,
    plan: Plan,
    *,
    provider: str | None = None,
    margin_deg: float | None = None,
    enqueue: Callable[[int], None] | None = None,
) -> FetchReport:
    """Fetch every target field of a plan into the data directory's catalogue (blocking).

    Frames flagged for lack of reference stars in a fetched field are queued again: through
    ``enqueue`` (the running pipeline's), else straight into the processing queue, where
    the daemon finds them at its next start.
    """
    source = make_provider(config, provider)
    fields = plan_fields(plan, field_radius_deg(config, margin_deg))
    data_dir = DataDir(config.data.directory)
    cat = config.catalogs
    with RefCatalog(data_dir.catalog_path) as catalog:
        report = fetch_fields(
            catalog, source, fields, mag_limit=cat.mag_limit, bright_limit=cat.bright_limit
        )
    if report.fetched and data_dir.has_log():
        log_db = ExposureLog(data_dir.log_path)
        try:
            if enqueue is None:
                from obsctl.pipeline.queue import ProcessingQueue

                enqueue = ProcessingQueue(log_db).enqueue
            report.requeued = requeue_covered(log_db, report.fetched, enqueue)
        finally:
            log_db.close()
    return report


def start_prefetch(host: Any, plan: Plan) -> asyncio.Task[FetchReport | None] | None:
    """Start fetching a plan's fields in the background (the night runner, at startup).

    Nothing starts when the pipeline reads the simulators' synthetic sky or ``[catalogs]
    provider`` is ``"none"``. The fetch runs in a thread; frames are never held for it.
    Requeued frames go to ``host.pipeline`` (the daemon's runner) when there is one.
    """
    config: Config = host.config
    if config.pipeline.reference_catalog != "file" or config.catalogs.provider == "none":
        return None
    pipeline = getattr(host, "pipeline", None)

    def enqueue(exposure_id: int) -> None:
        if pipeline is not None:
            # notify() wakes the runner; it runs on the event loop, not in this thread.
            loop.call_soon_threadsafe(pipeline.notify, exposure_id)
        else:
            from obsctl.pipeline.queue import ProcessingQueue

            log_db = ExposureLog(DataDir(config.data.directory).log_path)
            try:
                ProcessingQueue(log_db).enqueue(exposure_id)
            finally:
                log_db.close()

    async def run() -> FetchReport | None:
        try:
            report = await asyncio.to_thread(prefetch_plan, config, plan, enqueue=enqueue)
        except (ObsctlError, OSError) as exc:
            log.warning("catalogue prefetch failed: %s", exc)
            return None
        log.info(
            "catalogue prefetch (%s): %d field(s) fetched, %d already there, %d failed",
            report.provider,
            len(report.fetched),
            len(report.skipped),
            len(report.failed),
        )
        return report

    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run(), name="catalogue-prefetch")
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    return task
