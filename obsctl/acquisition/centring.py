"""Plate-solve and centre: after a slew to a light target, put the target on the frame's centre.

A centring run (as N.I.N.A.'s "slew and centre", Ekos's "slew to target" with the aligner):
a short frame where the mount was sent; its stars found by SEP; the pipeline's own astrometry
(`obsctl.pipeline.astrometry.Astrometry`, the local reference catalog, offline) gives the
sky at the frame's centre; the pointing error is corrected and the frame taken again, until
the target is within ``tolerance_arcsec`` of the centre or ``max_corrections`` are spent.

Two corrections, as configured (``[centring] method``):

- ``offset``: slew to the target moved by the measured error (the mount's model untouched),
  which works with every mount, and keeps working as long as the error is the same near the
  target;
- ``sync``: tell the mount where it looks (its model takes the error), then slew to the
  target; later slews on that side of the pier land better too.

A frame that does not solve within the matcher's usual search (a mount far off) is solved
again with wider searches (``search_arcmin``), the blind fallback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import sep
from astropy.io import fits
from astropy.wcs import WCS
from numpy.typing import NDArray

from obsctl.acquisition.sequence import Target
from obsctl.clock import Clock
from obsctl.config import Config
from obsctl.devices import Camera, Mount, MountStatus
from obsctl.errors import DeviceError, ObsctlError
from obsctl.frame import Frame
from obsctl.operations import Operations
from obsctl.pipeline.astrometry import Astrometry, ConeQuery
from obsctl.processing.astrometry import deproject_tan, project_tan
from obsctl.store.headers import FrameContext, raw_header
from obsctl.store.refcat import RefCatalog

__all__ = [
    "Centring",
    "CentringFrame",
    "CentringRun",
    "PlateSolveError",
    "PlateSolver",
    "Solution",
    "corrected_command",
    "detect_stars",
    "separation_arcsec",
    "spiral_offsets",
]

log = logging.getLogger(__name__)

Outcome = Literal["centred", "not centred", "unsolved", "failed"]

# The brightest stars are enough for a solution; more only slow the triangle matching.
_MAX_STARS = 200
# A star this many times the background noise, over this many pixels (no hot pixels).
_THRESHOLD_SIGMA = 5.0
_MIN_AREA_PX = 5


class PlateSolveError(ObsctlError):
    """A frame did not solve (too few stars, no match in the widest search)."""


@dataclass(frozen=True)
class Solution:
    """Where a frame looked.

    Attributes
    ----------
    ra_deg, dec_deg : float
        The sky (ICRS, degrees) at the frame's centre pixel.
    n_matched : int
        Catalog stars matched.
    rms_arcsec : float
        The fit's residual (arcsec).
    offset_arcmin : float
        How far from the reported position the solving search was centred (arcmin): 0
        unless the blind search found it.
    """

    ra_deg: float
    dec_deg: float
    n_matched: int
    rms_arcsec: float
    offset_arcmin: float


def separation_arcsec(ra1_deg: float, dec1_deg: float, ra2_deg: float, dec2_deg: float) -> float:
    """Return the angle between two sky positions (arcsec), by the haversine formula."""
    ra1, dec1, ra2, dec2 = (math.radians(v) for v in (ra1_deg, dec1_deg, ra2_deg, dec2_deg))
    hav = math.sin((dec2 - dec1) / 2) ** 2 + (
        math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
    )
    return math.degrees(2 * math.asin(math.sqrt(min(max(hav, 0.0), 1.0)))) * 3600.0


def corrected_command(
    commanded: tuple[float, float], solved: tuple[float, float], target: tuple[float, float]
) -> tuple[float, float]:
    """Return where to send the mount so that it looks at the target (offset correction).

    The mount sent to `commanded` looked at `solved`: the target seen from `solved` (in the
    tangent plane there) is the offset still to go, applied to `commanded` (in its own
    tangent plane), so the shift is right on the sky at any declination.

    Parameters
    ----------
    commanded, solved, target : tuple of float
        ``(ra_deg, dec_deg)``: where the mount was sent, where it looked, where it should.

    Returns
    -------
    tuple of float
        ``(ra_deg, dec_deg)``, RA in [0, 360).
    """
    xi, eta = project_tan(np.array([target[0]]), np.array([target[1]]), *solved)
    ra, dec = deproject_tan(xi, eta, *commanded)
    return float(ra[0]), float(dec[0])


def detect_stars(data: NDArray[Any], max_stars: int = _MAX_STARS) -> NDArray[Any]:
    """Return the frame's brightest sources for astrometry: ``x``, ``y`` (0-based), ``flux``.

    Raises
    ------
    PlateSolveError
        When SEP cannot extract (a frame of nothing but noise overflows nothing, but a
        frame of a bright extended glow can).
    """
    image = np.ascontiguousarray(data, dtype=np.float32)
    try:
        background = sep.Background(image)
        sub = image - background.back()
        objects = sep.extract(sub, _THRESHOLD_SIGMA, err=background.globalrms, minarea=_MIN_AREA_PX)
    except Exception as exc:  # SEP raises plain Exceptions (pixel stack, deblending overflow)
        raise PlateSolveError(f"no stars extracted: {exc}") from exc
    order = np.argsort(-objects["flux"], kind="stable")[:max_stars]
    out = np.zeros(order.size, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8")])
    for name in ("x", "y", "flux"):
        out[name] = objects[name][order]
    return out


def spiral_offsets(search_arcmin: float, reach_arcmin: float) -> list[tuple[float, float]]:
    """Return the tangent-plane offsets a blind search solves about, nearest first.

    Rings ``1.4 x search_arcmin`` apart, each with points at most that far apart, so that
    circles of ``search_arcmin`` about them cover every offset out to `reach_arcmin` (a point
    is at most ``0.99 x search_arcmin`` from one of them).

    Parameters
    ----------
    search_arcmin : float
        The pointing error one solve searches (arcmin), > 0.
    reach_arcmin : float
        How far the search goes (arcmin).

    Returns
    -------
    list of tuple of float
        ``(east, north)`` offsets (arcmin), the pointing itself not included.
    """
    spacing = 1.4 * search_arcmin
    offsets = []
    for k in range(1, math.ceil(reach_arcmin / spacing) + 1):
        radius = k * spacing
        n = math.ceil(2 * math.pi * k)
        offsets += [
            (radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n))
            for i in range(n)
        ]
    return offsets


class PlateSolver:
    """Solves a frame against the local reference catalog; blindly when the mount is far off.

    The matcher is fast and sure within a search of about the frame's size around the
    approximate WCS; a mount farther off is found by solving again about points spiralling
    out from the reported position (`spiral_offsets`), nearest first, as a "near-blind" solver
    does, instead of one solve over the whole area, whose thousands of reference stars the
    matcher's triangle voting cannot tell apart.

    Parameters
    ----------
    reference : RefCatalog or callable
        The reference stars (the pipeline's: a catalog, or the simulators' cone query).
    search_arcmin : float
        The pointing error one solve searches (arcmin).
    blind_search_arcmin : float
        How far the blind search goes (arcmin); 0 for none.
    bands : mapping, optional
        Filter name to catalogue band (``[catalogs] bands``).
    """

    def __init__(
        self,
        reference: RefCatalog | ConeQuery,
        search_arcmin: float,
        blind_search_arcmin: float = 0.0,
        bands: Mapping[str, str] | None = None,
    ) -> None:
        self.search_arcmin = search_arcmin
        self.offsets = [(0.0, 0.0), *spiral_offsets(search_arcmin, blind_search_arcmin)]
        self._astrometry = Astrometry(
            reference, max_offset_arcmin=search_arcmin, sip_degree=None, bands=bands or {}
        )

    def solve(self, data: NDArray[Any], header: fits.Header) -> Solution:
        """Return where the frame looked.

        Parameters
        ----------
        data : numpy.ndarray
            The raw frame (ADU).
        header : astropy.io.fits.Header
            Its raw header, with the approximate WCS from where the mount reported.

        Raises
        ------
        PlateSolveError
            When no search solves it, with the reason of the first.
        """
        stars = detect_stars(data)
        ra0, dec0 = float(header["CRVAL1"]), float(header["CRVAL2"])
        first_failure = None
        for east, north in self.offsets:
            moved = header.copy()
            ra, dec = deproject_tan(np.array([east / 60.0]), np.array([north / 60.0]), ra0, dec0)
            moved["CRVAL1"], moved["CRVAL2"] = float(ra[0]), float(dec[0])
            solved = self._astrometry.process(Frame(data=data, header=moved, sources=stars))
            if "wcs_rms_arcsec" not in solved.metrics:  # only a solution has a residual
                if first_failure is None:
                    first_failure = next((f for f in solved.flags if "astrometry" in f), "?")
                continue
            ny, nx = data.shape[:2]
            ra, dec = WCS(solved.header).celestial.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
            return Solution(
                ra_deg=float(ra) % 360.0,
                dec_deg=float(dec),
                n_matched=int(solved.metrics["wcs_matched"]),
                rms_arcsec=float(solved.metrics["wcs_rms_arcsec"]),
                offset_arcmin=math.hypot(east, north),
            )
        reach = math.hypot(*self.offsets[-1]) + self.search_arcmin
        raise PlateSolveError(
            f"{len(stars)} stars, no solution within {reach:.0f} arcmin: {first_failure}"
        )


@dataclass(frozen=True)
class CentringFrame:
    """One frame of a centring run.

    Attributes
    ----------
    commanded : tuple of float
        ``(ra_deg, dec_deg)`` the mount was sent to.
    solution : Solution or None
        Where it looked; None when it did not solve.
    error_arcsec : float or None
        The target's distance from the frame's centre (arcsec); None unsolved.
    """

    commanded: tuple[float, float]
    solution: Solution | None
    error_arcsec: float | None


@dataclass(frozen=True)
class CentringRun:
    """A centring run's result, as logged in ``centring_runs``.

    Attributes
    ----------
    started : datetime
        Observatory time it began.
    target : Target
        What was centred.
    method : str
        ``offset`` or ``sync``.
    frames : tuple of CentringFrame
        In order.
    corrections : int
        Slews (and syncs) made after the first frame.
    outcome : str
        ``centred``, ``not centred`` (out of corrections), ``unsolved`` (a frame did not
        solve; the mount stays where the last solved correction sent it) or ``failed``.
    reason : str or None
        Why not centred.
    pier_side : str or None
        The mount's side of the pier at the end.
    """

    started: datetime
    target: Target
    method: str
    frames: tuple[CentringFrame, ...]
    corrections: int
    outcome: Outcome
    reason: str | None
    pier_side: str | None

    @property
    def error_arcsec(self) -> float | None:
        """The last solved frame's distance from the target (arcsec); None if none solved."""
        errors = [f.error_arcsec for f in self.frames if f.error_arcsec is not None]
        return errors[-1] if errors else None

    def row(self, night: str) -> dict[str, Any]:
        """Return the run as a ``centring_runs`` row."""
        frames = [
            [f.solution.ra_deg, f.solution.dec_deg, f.error_arcsec, f.solution.offset_arcmin]
            if f.solution is not None
            else None
            for f in self.frames
        ]
        return {
            "night": night,
            "started_utc": self.started.isoformat(),
            "target": self.target.name,
            "ra_deg": self.target.ra_deg,
            "dec_deg": self.target.dec_deg,
            "method": self.method,
            "pier_side": self.pier_side,
            "frames": json.dumps(frames),
            "corrections": self.corrections,
            "error_arcsec": self.error_arcsec,
            "outcome": self.outcome,
            "reason": self.reason,
        }


class Centring:
    """Puts a target on the frame's centre: solve, correct, repeat.

    Parameters
    ----------
    camera, mount : Camera, Mount
        The devices.
    ops : Operations
        The device procedures (exposure, slew).
    clock : Clock
        Observatory time.
    config : Config
        ``[centring]``, the site and the telescope (for the frames' approximate WCS).
    solver : PlateSolver
        Solves the frames.
    check : callable, optional
        Called while frames expose; raises to stop the run (an abort for safety).
    """

    def __init__(
        self,
        camera: Camera,
        mount: Mount,
        ops: Operations,
        clock: Clock,
        config: Config,
        solver: PlateSolver,
        check: Callable[[], None] | None = None,
    ) -> None:
        self.camera = camera
        self.mount = mount
        self.ops = ops
        self.clock = clock
        self.config = config
        self.settings = config.centring
        self.solver = solver
        self.check = check

    async def solve_here(
        self, target: Target, filter_name: str | None
    ) -> tuple[Solution | None, str | None, MountStatus]:
        """Expose a frame where the mount points and solve it.

        Returns
        -------
        tuple
            The solution (None when it did not solve), the reason it did not, and the
            mount's status the frame was taken at.
        """
        status = await self.mount.status()
        await self.ops.expose(self.camera, self.settings.exposure_s, light=True, check=self.check)
        image = await self.camera.download()
        ctx = FrameContext(
            image=image,
            image_type="LIGHT",
            site=self.config.site,
            telescope=self.config.telescope,
            frame_number=0,
            start_time=image.metadata.start_time or self.clock.now(),
            target=target.name,
            filter_name=filter_name,
            mount=status,
        )
        try:
            solution = await asyncio.to_thread(self.solver.solve, image.data, raw_header(ctx))
        except PlateSolveError as exc:
            return None, str(exc), status
        return solution, None, status

    async def run(self, target: Target, filter_name: str | None = None) -> CentringRun:
        """Centre the target, the mount having been sent to it.

        Parameters
        ----------
        target : Target
            What to centre (ICRS).
        filter_name : str or None
            The filter in the beam (for the frames' header and the reference band).

        Returns
        -------
        CentringRun
            Centred, not centred, unsolved, or failed (a device error; the reason says which).

        Raises
        ------
        Exception
            What `check` raised.
        """
        started = self.clock.now()
        want = (target.ra_deg, target.dec_deg)
        commanded = want
        frames: list[CentringFrame] = []
        corrections = 0
        side: str | None = None

        def done(outcome: Outcome, reason: str | None) -> CentringRun:
            log.info("centring %s: %s%s", target.name, outcome, f" ({reason})" if reason else "")
            return CentringRun(
                started, target, self.settings.method, tuple(frames), corrections, outcome,
                reason, side,
            )  # fmt: skip

        try:
            while True:
                solution, why, status = await self.solve_here(target, filter_name)
                side = status.pier_side.name
                if solution is None:
                    frames.append(CentringFrame(commanded, None, None))
                    return done("unsolved", why)
                seen = (solution.ra_deg, solution.dec_deg)
                error = separation_arcsec(*seen, *want)
                frames.append(CentringFrame(commanded, solution, error))
                log.info(
                    "centring %s: %.1f arcsec off (%d stars matched)",
                    target.name, error, solution.n_matched,
                )  # fmt: skip
                if error <= self.settings.tolerance_arcsec:
                    return done("centred", None)
                if corrections >= self.settings.max_corrections:
                    return done(
                        "not centred",
                        f"{error:.1f} arcsec off after {corrections} corrections",
                    )
                if self.settings.method == "sync":
                    await self.ops.command(self.mount.sync_to_radec(*seen), self.mount.name, "sync")
                else:
                    commanded = corrected_command(commanded, seen, want)
                await self.ops.slew(self.mount, *commanded)
                corrections += 1
        except DeviceError as exc:
            return done("failed", f"{type(exc).__name__}: {exc}")
