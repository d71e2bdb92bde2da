"""The site's local horizon: trees, roofs and hills, as (azimuth, altitude) points.

A horizon file is the plain text N.I.N.A. reads as a "custom horizon" (``.hrz``) and Ekos
writes: one ``azimuth altitude`` pair per line, in degrees, azimuth north = 0, east = 90.
Like N.I.N.A. (``NINA.Core.Model.CustomHorizon.FromReader_Standard``), the two numbers may
be separated by spaces, tabs, commas or semicolons, lines starting with ``#`` are comments,
blank lines are skipped, at least two points are needed, and a repeated azimuth keeps its
last altitude. Two things are stricter than N.I.N.A., which skips a bad line with a warning:
a line that is not two plain decimal numbers (``inf``, ``nan``, ``1_0`` or non-ASCII digits),
an azimuth outside 0-360 or an altitude outside -90..90 refuses the whole file with a
`ConfigError` naming the file and the line, so that a typo cannot silently open a wall; and
text after a ``#`` on a data line is a comment too.

Between the points the horizon is linear in azimuth, and it wraps around north: the last
point before 360 and the first after 0 are joined across it. (N.I.N.A. instead copies the
value of the point nearest to north to 0 and 360 when neither is given; an azimuth of 0 or 360
given alone stands for both ends, as in N.I.N.A.)
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from obsctl.config import SiteConfig, brief_repr
from obsctl.errors import ConfigError

__all__ = [
    "MAX_HORIZON_BYTES",
    "MAX_HORIZON_POINTS",
    "Horizon",
    "load_horizon",
    "parse_horizon",
    "site_horizon",
]

log = logging.getLogger(__name__)

#: Largest horizon file read (bytes): a point every 0.01 deg of azimuth takes ~0.5 MB.
MAX_HORIZON_BYTES = 1_000_000
#: Most points a horizon may have (one every 0.01 deg of azimuth).
MAX_HORIZON_POINTS = 36_001

# Plain ASCII decimals: float() would also take "inf", "nan", "1_0" and Unicode digits.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)
_SEPARATORS = re.compile(r"[ \t,;]+")


@dataclass(frozen=True, eq=False)
class Horizon:
    """A local horizon: the altitude of the skyline as a function of azimuth.

    Parameters
    ----------
    az_deg : numpy.ndarray
        Azimuths of the knots (deg), increasing, covering 0 to 360 (built by `from_points`).
    alt_deg : numpy.ndarray
        Skyline altitude at each knot (deg).
    source : str
        Where the points came from (the file), for messages.
    """

    az_deg: NDArray[np.float64]
    alt_deg: NDArray[np.float64]
    source: str = "<horizon>"

    @classmethod
    def from_points(
        cls, points: dict[float, float] | list[tuple[float, float]], *, source: str = "<horizon>"
    ) -> Horizon:
        """Build a horizon from ``(azimuth, altitude)`` points in degrees.

        Parameters
        ----------
        points : mapping or list of pairs
            Azimuth (0 to 360 deg) to skyline altitude (-90 to 90 deg); two or more.
        source : str
            Where they came from, for messages.

        Raises
        ------
        ValueError
            With fewer than two points or a value out of range (the file reader reports
            those as a `ConfigError` first).
        """
        pairs = dict(points.items() if isinstance(points, dict) else points)
        if len(pairs) < 2:
            raise ValueError(f"{source}: a horizon needs at least two points, got {len(pairs)}")
        for a, h in pairs.items():
            if not (0.0 <= a <= 360.0 and -90.0 <= h <= 90.0):
                raise ValueError(f"{source}: point ({a}, {h}) is out of range")
        keys = sorted(pairs)
        az = np.array(keys, dtype=np.float64)
        alt = np.array([pairs[a] for a in keys], dtype=np.float64)
        if az[0] == 0.0 and az[-1] != 360.0:
            az, alt = np.append(az, 360.0), np.append(alt, alt[0])
        elif az[-1] == 360.0 and az[0] != 0.0:
            az, alt = np.insert(az, 0, 0.0), np.insert(alt, 0, alt[-1])
        elif az[0] != 0.0:
            # Neither end given: join the last point to the first across north.
            az = np.concatenate(([az[-1] - 360.0], az, [az[0] + 360.0]))
            alt = np.concatenate(([alt[-1]], alt, [alt[0]]))
        return cls(az, alt, source)

    def alt_at(self, az_deg: ArrayLike) -> NDArray[np.float64]:
        """Return the skyline altitude (deg) toward each azimuth (deg, any value; wraps at 360).

        Parameters
        ----------
        az_deg : array_like
            Azimuths in degrees, north = 0, east = 90.

        Returns
        -------
        numpy.ndarray
            Altitudes in degrees, of the shape of ``az_deg``; NaN where ``az_deg`` is NaN.
        """
        az = np.mod(np.asarray(az_deg, dtype=np.float64), 360.0)
        out: NDArray[np.float64] = np.interp(az, self.az_deg, self.alt_deg)
        return out

    def above(self, alt_deg: ArrayLike, az_deg: ArrayLike) -> NDArray[np.bool_]:
        """Return where a pointing (``alt_deg``, ``az_deg``, deg) is above the skyline."""
        out: NDArray[np.bool_] = np.asarray(alt_deg, dtype=np.float64) > self.alt_at(az_deg)
        return out

    @property
    def max_alt_deg(self) -> float:
        """Highest point of the skyline (deg)."""
        return float(self.alt_deg.max())


def parse_horizon(text: str, *, source: str = "<horizon>") -> Horizon:
    """Read the text of a horizon file (see the module docstring for the format).

    Parameters
    ----------
    text : str
        The file's text.
    source : str
        The file's name, for messages.

    Raises
    ------
    ConfigError
        Naming the source and the line: not two plain numbers, a value out of range, too
        many points, or fewer than two.
    """
    points: dict[float, float] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        refuse = functools.partial(_refusal, source, number, raw)
        fields = _SEPARATORS.split(line)
        if len(fields) != 2:
            raise refuse(f"expected 'azimuth altitude', found {len(fields)} value(s)")
        values: list[float] = []
        for name, field in zip(("azimuth", "altitude"), fields, strict=True):
            if not _NUMBER.fullmatch(field):
                raise refuse(f"{name} {brief_repr(field)} is not a number")
            value = float(field)
            if not math.isfinite(value):
                raise refuse(f"{name} {brief_repr(field)} is not a finite number")
            values.append(value)
        az, alt = values
        if not 0.0 <= az <= 360.0:
            raise refuse(f"azimuth {az:g} deg is outside 0-360")
        if not -90.0 <= alt <= 90.0:
            raise refuse(f"altitude {alt:g} deg is outside -90..90")
        points[az] = alt
        if len(points) > MAX_HORIZON_POINTS:
            raise refuse(f"more than {MAX_HORIZON_POINTS} points")
    if len(points) < 2:
        raise ConfigError(
            f"{source}: a horizon needs at least two 'azimuth altitude' points, "
            f"found {len(points)}",
            path=source,
        )
    return Horizon.from_points(points, source=source)


def _refusal(source: str, number: int, raw: str, why: str) -> ConfigError:
    return ConfigError(
        f"{source}: line {number}: {why} (got {brief_repr(raw.strip())})", path=source
    )


def load_horizon(path: str | Path) -> Horizon:
    """Read a horizon file.

    Raises
    ------
    ConfigError
        When the file cannot be read, is larger than `MAX_HORIZON_BYTES`, is not UTF-8
        text, or is invalid (naming the line).
    """
    file = Path(path)
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_HORIZON_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{file}: cannot read the horizon file: {exc.strerror or exc}", path=str(file)
        ) from exc
    if len(raw) > MAX_HORIZON_BYTES:
        raise ConfigError(
            f"{file}: horizon file larger than {MAX_HORIZON_BYTES} bytes", path=str(file)
        )
    try:
        text = raw.decode("utf-8-sig")  # N.I.N.A. on Windows may write a byte-order mark
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{file}: line {line}: not UTF-8 text", path=str(file)) from exc
    return parse_horizon(text, source=str(file))


@functools.lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int, size: int) -> Horizon:
    del mtime_ns, size  # only part of the key: an edited file is read again
    return load_horizon(path)


def site_horizon(site: SiteConfig) -> Horizon | None:
    """Return the horizon of ``site`` (its ``horizon`` file), or None when it has none.

    The file is read once and again only when it changes.

    Raises
    ------
    ConfigError
        When the file cannot be read or is invalid.
    """
    if site.horizon is None:
        return None
    try:
        stat = site.horizon.stat()
    except OSError as exc:
        raise ConfigError(
            f"{site.horizon}: site.horizon: cannot read the horizon file: {exc.strerror or exc}",
            path=str(site.horizon),
        ) from exc
    return _cached(str(site.horizon), stat.st_mtime_ns, stat.st_size)
