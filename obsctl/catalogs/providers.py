"""Reference-catalogue providers: a cone search with magnitude limits over TAP (pyvo).

Every provider answers `CatalogProvider.cone` with an `astropy.table.Table` of the same
shape: ``source_id`` (text), ``ra_deg``/``dec_deg`` (deg, ICRS, at the catalogue's epoch),
``pmra_mas_yr``/``pmdec_mas_yr`` (mas/yr, pmra as mu_alpha*) and ``epoch_yr`` (Julian year)
where the catalogue gives them (NaN otherwise), and one column per band it has, named by the
keys of `obsctl.store.refcat.BANDS` (``"V"``, ``"g"``, ``"G"``...), each with ``<band>_err``
(mag). Bands a catalogue lacks are filled later by `obsctl.catalogs.bands.complete_bands`.

Failures become one `obsctl.errors.CatalogError` line: a timeout or a refused connection is a
`CatalogUnreachableError`, an answer truncated at MAXREC a `CatalogOverflowError`, anything
else (HTTP status, a TAP error document with ``QUERY_STATUS`` ``ERROR``, an unreadable
VOTable) a `CatalogError`.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import requests
from astropy.table import Table
from numpy.typing import NDArray

from obsctl.errors import CatalogError, CatalogOverflowError, CatalogUnreachableError

__all__ = [
    "GAIA_TAP_URL",
    "PROVIDERS",
    "VIZIER_TAP_URL",
    "ApassVizier",
    "AtlasVizier",
    "CatalogProvider",
    "GaiaTap",
    "run_tap",
]

log = logging.getLogger(__name__)

#: The ESA Gaia archive's TAP service.
GAIA_TAP_URL = "https://gea.esac.esa.int/tap-server/tap"
#: CDS's TAP service over every VizieR table.
VIZIER_TAP_URL = "https://tapvizier.cds.unistra.fr/TAPVizieR/tap"

_MAG_PER_SNR = 2.5 / math.log(10.0)


class CatalogProvider(Protocol):
    """A reference catalogue that answers cone searches."""

    #: Short name used in config and on the command line (``"gaia"``).
    name: ClassVar[str]
    #: Name the stars are stored under in the local catalogue (``"gaia_dr3"``).
    catalog: ClassVar[str]
    #: Band the magnitude limits apply to (a `obsctl.store.refcat.BANDS` key).
    limit_band: ClassVar[str]

    def cone(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        mag_limit: float,
        bright_limit: float | None = None,
    ) -> Table:
        """Return the stars within ``radius_deg`` of a centre, ``bright_limit`` to ``mag_limit``.

        Magnitude limits (mag) apply to `limit_band`.

        Raises
        ------
        CatalogError
            `CatalogUnreachableError` on a timeout or no connection, `CatalogOverflowError`
            when the answer was truncated, `CatalogError` for any other failure.
        """
        ...


class _TimeoutSession(requests.Session):
    """A requests session with a deadline on every request (pyvo passes none of its own)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


def run_tap(url: str, query: str, *, provider: str, max_rows: int, timeout_s: float) -> Table:
    """Run a synchronous TAP query and return its table, or raise a one-line CatalogError.

    Parameters
    ----------
    url : str
        The TAP service's base URL (``.../tap``; the query goes to ``<url>/sync``).
    query : str
        ADQL.
    provider : str
        Named in errors.
    max_rows : int
        MAXREC: an answer of more rows is an overflow.
    timeout_s : float
        Deadline of the connection and of every read (s).
    """
    import pyvo
    from pyvo.dal.exceptions import DALOverflowWarning, DALQueryError, DALServiceError

    session = _TimeoutSession(timeout_s)
    try:
        service = pyvo.dal.TAPService(url, session=session)
        with warnings.catch_warnings():
            # The overflow is read from QUERY_STATUS below and raised as an error.
            warnings.simplefilter("ignore", DALOverflowWarning)
            result = service.run_sync(query, maxrec=max_rows)
    except Exception as exc:  # pyvo and astropy raise many types for a failed request
        network = _network_failure(exc)
        if network is not None:
            raise CatalogUnreachableError(
                f"no answer from {url} within {timeout_s:g} s ({type(network).__name__})",
                provider=provider,
            ) from exc
        if isinstance(exc, DALQueryError):  # the service answered with a TAP error document
            raise CatalogError(
                f"the TAP service refused the query: {_one_line(exc)}", provider=provider
            ) from exc
        if isinstance(exc, DALServiceError):
            code = getattr(exc, "code", None)
            status = f"HTTP {code}: " if code else ""
            raise CatalogError(f"{url}: {status}{_one_line(exc)}", provider=provider) from exc
        raise CatalogError(
            f"{url}: unreadable answer: {_one_line(exc)}", provider=provider
        ) from exc
    finally:
        session.close()
    # DALResults.status: (QUERY_STATUS value, its text), the last one of the answer.
    status = str(result.status[0] or "OK").upper()
    table = result.to_table()
    if status == "OVERFLOW" or len(table) > max_rows:
        raise CatalogOverflowError(
            f"answer truncated at {len(table)} rows (MAXREC {max_rows}): the cone holds more "
            "stars; split it or lower the magnitude limit",
            provider=provider,
        )
    if status not in ("OK", ""):
        raise CatalogError(f"QUERY_STATUS {status}", provider=provider)
    return table


def _network_failure(exc: BaseException) -> BaseException | None:
    """Return the timeout or connection failure behind an error (pyvo wraps them), or None."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, requests.Timeout | requests.ConnectionError | TimeoutError):
            return item
        cause = getattr(item, "cause", None)
        todo += [
            item.__cause__,
            item.__context__,
            cause if isinstance(cause, BaseException) else None,
        ]
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _floats(column: Any) -> NDArray[np.float64]:
    """Return a VOTable column as float64, masked (NULL) entries as NaN."""
    data = np.ma.asarray(column)
    out: NDArray[np.float64] = np.ma.filled(data.astype(np.float64), np.nan)
    return out


def _circle(ra_col: str, dec_col: str, ra_deg: float, dec_deg: float, radius_deg: float) -> str:
    return (
        f"1 = CONTAINS(POINT('ICRS', {ra_col}, {dec_col}), "
        f"CIRCLE('ICRS', {ra_deg % 360.0:.8f}, {dec_deg:.8f}, {radius_deg:.8f}))"
    )


def _check_cone(provider: str, dec_deg: float, radius_deg: float, mag_limit: float) -> None:
    if not (-90.0 <= dec_deg <= 90.0 and 0.0 < radius_deg <= 10.0 and math.isfinite(mag_limit)):
        raise CatalogError(
            f"bad cone: dec {dec_deg} deg (need -90..90), radius {radius_deg} deg "
            f"(need 0 < r <= 10), magnitude limit {mag_limit} (need a number)",
            provider=provider,
        )


def _result(
    ids: NDArray[Any],
    ra: NDArray[np.float64],
    dec: NDArray[np.float64],
    motion: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None,
    mags: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]],
) -> Table:
    n = len(ra)
    nan = np.full(n, np.nan)
    pmra, pmdec, epoch = motion if motion is not None else (nan, nan, nan)
    columns: dict[str, Any] = {
        "source_id": np.array([str(v) for v in ids], dtype=str),
        "ra_deg": ra,
        "dec_deg": dec,
        "pmra_mas_yr": pmra,
        "pmdec_mas_yr": pmdec,
        "epoch_yr": epoch,
    }
    for band, (mag, err) in mags.items():
        columns[band] = mag
        columns[band + "_err"] = err
    return Table(columns)


@dataclass(frozen=True)
class _TapCatalog:
    """What the TAP providers share: the service, its deadlines, and the cone search.

    Parameters
    ----------
    url : str
        The TAP base URL.
    timeout_s : float
        Deadline of each request (s).
    max_rows : int
        MAXREC of one cone.
    """

    name: ClassVar[str]
    url: str = ""
    timeout_s: float = 60.0
    max_rows: int = 50_000

    def query(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        mag_limit: float,
        bright_limit: float | None,
    ) -> str:
        """Return the ADQL of a cone."""
        raise NotImplementedError

    def parse(self, raw: Table) -> Table:
        """Turn the service's columns into the providers' common table."""
        raise NotImplementedError

    def cone(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        *,
        mag_limit: float,
        bright_limit: float | None = None,
    ) -> Table:
        """Return the stars in a cone (see `CatalogProvider.cone`)."""
        _check_cone(self.name, dec_deg, radius_deg, mag_limit)
        query = self.query(ra_deg, dec_deg, radius_deg, mag_limit, bright_limit)
        raw = run_tap(
            self.url, query, provider=self.name, max_rows=self.max_rows, timeout_s=self.timeout_s
        )
        return self.parse(raw)


@dataclass(frozen=True)
class GaiaTap(_TapCatalog):
    """Gaia DR3 through the ESA archive's TAP service.

    ``gaiadr3.gaia_source`` (positions and proper motions at epoch J2016.0, ``ref_epoch``;
    G, BP, RP) left-joined with ``gaiadr3.synthetic_photometry_gspc`` (Johnson-Kron-Cousins
    U B V R I and SDSS u g r i z from the XP spectra, about 220 million stars; Gaia
    Collaboration, Montegriffo et al. 2023). Synthetic magnitudes are used only where their
    ``*_flag`` is 1 (inside the standardised range); magnitude errors come from the flux
    errors (``1.0857 * flux_error / flux``). Table and column names: the Gaia DR3
    documentation, chapter 20 (datamodel of gaia_source and synthetic_photometry_gspc).

    Parameters
    ----------
    url : str
        The TAP base URL.
    timeout_s : float
        Deadline of each request (s).
    max_rows : int
        MAXREC of one cone.
    """

    name: ClassVar[str] = "gaia"
    catalog: ClassVar[str] = "gaia_dr3"
    limit_band: ClassVar[str] = "G"

    url: str = GAIA_TAP_URL

    #: GSPC bands: (band key, column prefix).
    SYNTHETIC: ClassVar[tuple[tuple[str, str], ...]] = (
        ("U", "u_jkc"),
        ("B", "b_jkc"),
        ("V", "v_jkc"),
        ("R", "r_jkc"),
        ("I", "i_jkc"),
        ("u", "u_sdss"),
        ("g", "g_sdss"),
        ("r", "r_sdss"),
        ("i", "i_sdss"),
        ("z", "z_sdss"),
    )

    def query(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        mag_limit: float,
        bright_limit: float | None,
    ) -> str:
        """Return the ADQL of a cone."""
        synthetic = ", ".join(
            f"s.{p}_mag, s.{p}_flux, s.{p}_flux_error, s.{p}_flag" for _, p in self.SYNTHETIC
        )
        bright = "" if bright_limit is None else f" AND g.phot_g_mean_mag >= {bright_limit:.3f}"
        return (
            "SELECT g.source_id, g.ra, g.dec, g.pmra, g.pmdec, g.ref_epoch, "
            "g.phot_g_mean_mag, g.phot_bp_mean_mag, g.phot_rp_mean_mag, "
            "g.phot_g_mean_flux_over_error, g.phot_bp_mean_flux_over_error, "
            f"g.phot_rp_mean_flux_over_error, {synthetic} "
            "FROM gaiadr3.gaia_source AS g "
            "LEFT OUTER JOIN gaiadr3.synthetic_photometry_gspc AS s "
            "ON s.source_id = g.source_id "
            f"WHERE {_circle('g.ra', 'g.dec', ra_deg, dec_deg, radius_deg)} "
            f"AND g.phot_g_mean_mag <= {mag_limit:.3f}{bright}"
        )

    def parse(self, raw: Table) -> Table:
        """Turn the service's columns into the providers' common table."""
        need = {"source_id", "ra", "dec", "phot_g_mean_mag"}
        missing = need - set(raw.colnames)
        if missing:
            raise CatalogError(
                f"answer lacks column(s) {', '.join(sorted(missing))}", provider=self.name
            )
        mags: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
        for band, mag_col, snr_col in (
            ("G", "phot_g_mean_mag", "phot_g_mean_flux_over_error"),
            ("BP", "phot_bp_mean_mag", "phot_bp_mean_flux_over_error"),
            ("RP", "phot_rp_mean_mag", "phot_rp_mean_flux_over_error"),
        ):
            if mag_col not in raw.colnames:
                continue
            snr = _floats(raw[snr_col]) if snr_col in raw.colnames else np.full(len(raw), np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.where(snr > 0, _MAG_PER_SNR / snr, np.nan)
            mags[band] = (_floats(raw[mag_col]), err)
        for band, prefix in self.SYNTHETIC:
            if f"{prefix}_mag" not in raw.colnames:
                continue
            mag = _floats(raw[f"{prefix}_mag"])
            flag = _floats(raw[f"{prefix}_flag"]) if f"{prefix}_flag" in raw.colnames else None
            if flag is not None:
                mag = np.where(flag == 1, mag, np.nan)  # outside the standardised range
            flux = _floats(raw[f"{prefix}_flux"]) if f"{prefix}_flux" in raw.colnames else None
            flux_err = (
                _floats(raw[f"{prefix}_flux_error"])
                if f"{prefix}_flux_error" in raw.colnames
                else None
            )
            err = np.full(len(raw), np.nan)
            if flux is not None and flux_err is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    err = np.where(flux > 0, _MAG_PER_SNR * flux_err / flux, np.nan)
            mags[band] = (mag, np.where(np.isfinite(mag), err, np.nan))
        motion = (
            _floats(raw["pmra"]) if "pmra" in raw.colnames else np.full(len(raw), np.nan),
            _floats(raw["pmdec"]) if "pmdec" in raw.colnames else np.full(len(raw), np.nan),
            _floats(raw["ref_epoch"]) if "ref_epoch" in raw.colnames else np.full(len(raw), 2016.0),
        )
        return _result(
            np.asarray(raw["source_id"]), _floats(raw["ra"]), _floats(raw["dec"]), motion, mags
        )


@dataclass(frozen=True)
class _VizierCatalog(_TapCatalog):
    """A VizieR table through CDS's TAP service: positions, magnitudes with ``e_`` errors.

    Subclasses name the table and its columns; the magnitude limits apply to the column
    ``LIMIT`` (the provider's `limit_band`).
    """

    url: str = VIZIER_TAP_URL

    TABLE: ClassVar[str]
    RA: ClassVar[str]
    DEC: ClassVar[str]
    #: Columns selected besides the position and the magnitudes (identifiers, motions).
    EXTRA: ClassVar[tuple[str, ...]] = ()
    #: (band key, magnitude column); each has an ``e_<column>``.
    MAGS: ClassVar[tuple[tuple[str, str], ...]]
    LIMIT: ClassVar[str]

    def query(
        self,
        ra_deg: float,
        dec_deg: float,
        radius_deg: float,
        mag_limit: float,
        bright_limit: float | None,
    ) -> str:
        """Return the ADQL of a cone (quoted names are ADQL delimited identifiers)."""
        columns = [self.RA, self.DEC, *self.EXTRA]
        columns += [name for _, c in self.MAGS for name in (c, f"e_{c}")]
        selected = ", ".join(f'"{c}"' for c in columns)
        bright = "" if bright_limit is None else f' AND "{self.LIMIT}" >= {bright_limit:.3f}'
        where = _circle(f'"{self.RA}"', f'"{self.DEC}"', ra_deg, dec_deg, radius_deg)
        return (
            f'SELECT {selected} FROM "{self.TABLE}" '
            f'WHERE {where} AND "{self.LIMIT}" <= {mag_limit:.3f}{bright}'
        )

    def parse(self, raw: Table) -> Table:
        """Turn the service's columns into the providers' common table."""
        missing = {self.RA, self.DEC} - set(raw.colnames)
        if missing:
            raise CatalogError(
                f"answer lacks column(s) {', '.join(sorted(missing))}", provider=self.name
            )
        ra, dec = _floats(raw[self.RA]), _floats(raw[self.DEC])
        mags = {
            band: (_floats(raw[col]), _floats(raw[f"e_{col}"]))
            for band, col in self.MAGS
            if col in raw.colnames and f"e_{col}" in raw.colnames
        }
        return _result(self._ids(raw, ra, dec), ra, dec, self._motion(raw), mags)

    def _ids(self, raw: Table, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[Any]:
        """Return the stars' identifiers."""
        raise NotImplementedError

    def _motion(
        self, raw: Table
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]] | None:
        """Return proper motions (mas/yr) and epochs (yr), or None when the table has none."""
        return None


@dataclass(frozen=True)
class ApassVizier(_VizierCatalog):
    """APASS through VizieR's TAP service.

    APASS DR10 is published by the AAVSO as files only; VizieR holds DR9, ``II/336/apass9``
    (Henden et al. 2016), which is what this queries: ``recno``, ``RAJ2000``/``DEJ2000``
    (deg; APASS gives no proper motions, so positions are used as they are), ``Bmag``,
    ``Vmag``, ``g'mag``, ``r'mag``, ``i'mag`` with ``e_`` errors (column names from the
    VizieR ReadMe of II/336). The magnitude limits apply to V.
    """

    name: ClassVar[str] = "apass"
    catalog: ClassVar[str] = "apass_dr9"
    limit_band: ClassVar[str] = "V"

    TABLE: ClassVar[str] = "II/336/apass9"
    RA: ClassVar[str] = "RAJ2000"
    DEC: ClassVar[str] = "DEJ2000"
    EXTRA: ClassVar[tuple[str, ...]] = ("recno",)
    MAGS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("B", "Bmag"),
        ("V", "Vmag"),
        ("g", "g'mag"),
        ("r", "r'mag"),
        ("i", "i'mag"),
    )
    LIMIT: ClassVar[str] = "Vmag"

    def _ids(self, raw: Table, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[Any]:
        if "recno" not in raw.colnames:
            raise CatalogError("answer lacks column(s) recno", provider=self.name)
        return np.asarray(raw["recno"])


@dataclass(frozen=True)
class AtlasVizier(_VizierCatalog):
    """ATLAS-RefCat2 (Tonry et al. 2018) through VizieR's TAP service.

    ``J/ApJ/867/105/refcat2``: ``RA_ICRS``/``DE_ICRS`` (deg, Gaia DR2 positions at epoch
    J2015.5), ``pmRA``/``pmDE`` (mas/yr), Gaia ``Gmag`` and the Pan-STARRS-system ``gmag``,
    ``rmag``, ``imag``, ``zmag`` with ``e_`` errors (names from the VizieR ReadMe of
    J/ApJ/867/105). RefCat2's g r i z are on the Pan-STARRS1 system, stored in the SDSS
    columns: the two differ by a few hundredths of a magnitude. The limits apply to r.
    """

    name: ClassVar[str] = "atlas"
    catalog: ClassVar[str] = "atlas_refcat2"
    limit_band: ClassVar[str] = "r"

    TABLE: ClassVar[str] = "J/ApJ/867/105/refcat2"
    RA: ClassVar[str] = "RA_ICRS"
    DEC: ClassVar[str] = "DE_ICRS"
    EXTRA: ClassVar[tuple[str, ...]] = ("pmRA", "pmDE")
    EPOCH_YR: ClassVar[float] = 2015.5
    MAGS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("G", "Gmag"),
        ("g", "gmag"),
        ("r", "rmag"),
        ("i", "imag"),
        ("z", "zmag"),
    )
    LIMIT: ClassVar[str] = "rmag"

    def _ids(self, raw: Table, ra: NDArray[np.float64], dec: NDArray[np.float64]) -> NDArray[Any]:
        # RefCat2 has no identifier column: its Gaia DR2 position (to 1 mas) names the star.
        return np.array([f"{a:.7f}{d:+.7f}" for a, d in zip(ra, dec, strict=True)])

    def _motion(
        self, raw: Table
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        nan = np.full(len(raw), np.nan)
        return (
            _floats(raw["pmRA"]) if "pmRA" in raw.colnames else nan,
            _floats(raw["pmDE"]) if "pmDE" in raw.colnames else nan,
            np.full(len(raw), self.EPOCH_YR),
        )


#: Providers by their config and command-line name.
PROVIDERS: dict[str, type[GaiaTap] | type[ApassVizier] | type[AtlasVizier]] = {
    "gaia": GaiaTap,
    "apass": ApassVizier,
    "atlas": AtlasVizier,
}
