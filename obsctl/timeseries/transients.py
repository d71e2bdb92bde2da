"""Transients and moving objects from the difference candidates, frame after frame.

After a frame's difference candidates are stored (`obsctl.pipeline.difference`), the watch:

1. links the field's real, positive detections of the last ``link_window_h`` into moving
   objects (`obsctl.timeseries.moving.link_tracks`); a new track is a ``moving_object``
   alert, and its detections are never a transient;
2. gathers the frame's other real, positive detections into transients: a detection within
   ``match_radius_arcsec`` of where a known transient of the field was first seen, on a later
   frame, is another sighting of it; otherwise it starts a new one;
3. alerts a transient once it was seen on ``transient_detections`` frames spanning at least
   the time a moving object at the slowest linked rate takes to move twice the matching
   radius (so that a slow asteroid never passes for a transient: by then it has left), and
   none of its detections belongs to a moving object; with its position, magnitude, the
   nearest galaxy (the host's offset) and the address of its cutouts.

Known transients are forced on every later difference of their field by the difference
stage: their forced fluxes and magnitudes make their light curves.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from obsctl.config import DifferenceConfig
from obsctl.store.candidates import (
    add_transient,
    field_detections,
    field_transients,
    galaxies_near,
    link_candidates,
    moving_objects,
    put_moving_object,
    track_detections,
    update_transient,
)
from obsctl.store.datadir import DataDir
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.alerts import Alert
from obsctl.timeseries.matching import separation_arcsec
from obsctl.timeseries.moving import DETECTION_DTYPE, MPC_BANDS, Track, link_tracks, mpc_report
from obsctl.timeseries.store import LightCurveStore

__all__ = ["TransientWatch", "host_offset", "night_mpc_report"]

log = logging.getLogger(__name__)

# A host galaxy is looked for this far from a transient (arcsec).
_HOST_RADIUS_ARCSEC = 15.0
# A moving object's temporary designation in the MPC report: this and its id, so that a
# night's reports, written again, keep naming each object the same.
_MPC_PREFIX = "M"
# Columns 66-71 of an MPC line: the magnitude and its band.
_MPC_MAG = slice(65, 71)


def host_offset(
    ra_deg: float, dec_deg: float, galaxies: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], float, float] | None:
    """Return the nearest galaxy, the transient's distance from it and its position angle.

    Parameters
    ----------
    ra_deg, dec_deg : float
        The transient (deg).
    galaxies : sequence of dict
        Candidates hosts with ``ra_deg`` and ``dec_deg`` (deg).

    Returns
    -------
    tuple or None
        The galaxy, the offset (arcsec) and the position angle of the transient seen from
        the galaxy's centre (deg, east of north); None without galaxies.
    """
    if not galaxies:
        return None
    ra = np.array([g["ra_deg"] for g in galaxies], dtype=np.float64)
    dec = np.array([g["dec_deg"] for g in galaxies], dtype=np.float64)
    distance = separation_arcsec(ra, dec, ra_deg, dec_deg)
    i = int(np.argmin(distance))
    d_east = (ra_deg - ra[i] + 540.0) % 360.0 - 180.0
    d_east *= math.cos(math.radians(dec_deg))
    pa = math.degrees(math.atan2(d_east, dec_deg - dec[i])) % 360.0
    return galaxies[i], float(distance[i]), pa


def _detections_array(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Return the candidates as `link_tracks` takes them (position errors: its bound)."""
    out = np.zeros(len(rows), dtype=DETECTION_DTYPE)
    for name, key in (("exposure_id", "exposure_id"), ("mjd", "mjd_mid"), ("ra_deg", "ra_deg"),
                      ("dec_deg", "dec_deg"), ("mag", "mag"), ("mag_err", "mag_err"),
                      ("snr", "snr")):  # fmt: skip
        out[name] = [np.nan if r[key] is None else r[key] for r in rows]
    for name in ("pos_err_arcsec", "elongation", "theta_deg"):
        out[name] = np.nan
    return out


class TransientWatch:
    """Link moving objects and alert transients as difference candidates are stored.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    settings : DifferenceConfig
        ``[difference]``: thresholds, the matching radius, the linking window and rates.
    data_dir : DataDir or None, optional
        The data directory, where the reference images' catalogs are read (hosts); None
        looks for hosts among classified galaxies only.
    """

    def __init__(
        self, log_db: ExposureLog, settings: DifferenceConfig, data_dir: DataDir | None = None
    ) -> None:
        self.log_db = log_db
        self.settings = settings
        self.data_dir = data_dir
        self.store = LightCurveStore(log_db)
        threshold = settings.real_bogus_threshold
        if threshold is None:  # the model's own: what it keeps 95 % of real candidates above
            from obsctl.classify.realbogus import RealBogusClassifier

            threshold = RealBogusClassifier(settings.real_bogus_model).threshold
        self.real_bogus_threshold = threshold
        self._reference_catalog: tuple[int, Table] | None = None
        self._areas: dict[int, float | None] = {}

    def process_exposure(self, exposure_id: int) -> list[Alert]:
        """Update the frame's field's moving objects and transients; return new alerts.

        The alerts are stored (an alert whose key is known is not returned again). A frame
        without a difference (no reference, or not a light frame) gives none.
        """
        rows = self.log_db.query(
            "SELECT e.target, e.night, e.mjd_mid, d.reference_id FROM difference_frames d "
            "JOIN exposures e ON e.id = d.exposure_id WHERE d.exposure_id = ?",
            (exposure_id,),
        )
        if not rows:
            return []
        frame = rows[0]
        field, mjd = frame["target"], float(frame["mjd_mid"])
        s = self.settings
        detections = field_detections(
            self.log_db, field, since_mjd=mjd - s.link_window_h / 24.0, until_mjd=mjd,
            min_real_bogus=self.real_bogus_threshold,
        )  # fmt: skip
        alerts, tracked = self._moving_objects(
            field, frame["night"], exposure_id, frame["reference_id"], detections
        )
        # A frame seen before (a restart) adds no sightings twice.
        mine = [
            d for d in detections
            if d["exposure_id"] == exposure_id and d["id"] not in tracked
            and d["transient_id"] is None
        ]  # fmt: skip
        alerts += self._transients(field, frame["reference_id"], exposure_id, mine, tracked)
        new = [a for a in alerts if self.store.add_alert(a)]
        for alert in new:
            log.warning("alert: %s", alert.message)
        return new

    def _moving_objects(
        self,
        field: str,
        night: str,
        exposure_id: int,
        reference_id: int,
        detections: list[dict[str, Any]],
    ) -> tuple[list[Alert], set[int]]:
        """Link the window's detections; store tracks; alert new ones. Returns tracked ids."""
        s = self.settings
        tracks: list[Track] = []
        if len({d["exposure_id"] for d in detections}) >= 3:
            tracks = link_tracks(
                _detections_array(detections), min_rate_arcsec_min=s.min_rate_arcsec_min,
                max_rate_arcsec_min=s.max_rate_arcsec_min,
                field_area_arcsec2=self._footprint(reference_id),
            )  # fmt: skip
        alerts: list[Alert] = []
        tracked: set[int] = set()
        for track in tracks:
            members = [detections[i] for i in track.indices]
            known = sorted({m["track_id"] for m in members if m["track_id"] is not None})
            mag = None if math.isnan(track.mag) else track.mag
            values: dict[str, Any] = {
                "field": field, "night": night, "epoch_mjd": track.epoch_mjd,
                "ra_deg": track.ra_deg, "dec_deg": track.dec_deg,
                "rate_arcsec_min": track.rate_arcsec_min, "pa_deg": track.pa_deg,
                "mag": mag,
                "mag_err": None if math.isnan(track.mag_err) else track.mag_err,
                "rms_arcsec": track.rms_arcsec, "detections": track.n_detections,
            }  # fmt: skip
            object_id = put_moving_object(self.log_db, values, known[0] if known else None)
            link_candidates(self.log_db, track={m["id"]: object_id for m in members})
            tracked.update(m["id"] for m in members)
            if known:
                continue
            alerts.append(
                Alert(
                    kind="moving_object",
                    field=field,
                    target=None,
                    object_id=None,
                    exposure_id=exposure_id,
                    mjd=track.epoch_mjd,
                    mag=mag,
                    delta_mag=None,
                    significance=None,
                    message=f"moving object in {field}: {track.rate_arcsec_min:.2f} arcsec/min "
                    f"towards PA {track.pa_deg:.0f} deg, {track.n_detections} detections",
                    dedup_key=f"moving:{object_id}",
                    ra_deg=track.ra_deg,
                    dec_deg=track.dec_deg,
                    details={
                        "moving_object": object_id,
                        "rate_arcsec_min": track.rate_arcsec_min,
                        "pa_deg": track.pa_deg,
                        "detections": [m["id"] for m in members],
                    },
                )
            )
        return alerts, tracked

    def _transients(
        self,
        field: str,
        reference_id: int,
        exposure_id: int,
        detections: list[dict[str, Any]],
        tracked: set[int],
    ) -> list[Alert]:
        """Add the frame's detections to the field's transients; alert those seen enough."""
        s = self.settings
        known = field_transients(self.log_db, field)
        links: dict[int, int] = {}
        touched: set[int] = set()
        for d in detections:
            best = None
            for t in known:
                if float(d["mjd_mid"]) <= t["last_mjd"]:
                    continue  # one sighting per frame
                sep = float(separation_arcsec(d["ra_deg"], d["dec_deg"], t["ra_deg"], t["dec_deg"]))
                if sep <= s.match_radius_arcsec and (best is None or sep < best[1]):
                    best = (t, sep)
            mag = d["mag"]
            if best is None:
                tid = add_transient(self.log_db, {
                    "field": field, "ra_deg": d["ra_deg"], "dec_deg": d["dec_deg"],
                    "first_mjd": d["mjd_mid"], "last_mjd": d["mjd_mid"], "detections": 1,
                    "peak_mag": mag,
                })  # fmt: skip
                known = field_transients(self.log_db, field)
            else:
                t = best[0]
                tid = int(t["id"])
                peak = t["peak_mag"] if mag is None else min(mag, t["peak_mag"] or math.inf)
                update_transient(self.log_db, tid, {
                    "last_mjd": d["mjd_mid"], "detections": t["detections"] + 1,
                    "peak_mag": peak,
                })  # fmt: skip
                known = field_transients(self.log_db, field)
            links[d["id"]] = tid
            touched.add(tid)
        link_candidates(self.log_db, transient=links)
        alerts = []
        by_id = {int(t["id"]): t for t in known}
        for tid in sorted(touched):
            t = by_id[tid]
            if t["alerted"] or t["detections"] < s.transient_detections:
                continue
            # Still at its first position after a moving object at the slowest linked rate
            # would have left it: frames a minute apart cannot tell a slow asteroid from a
            # transient, minutes can.
            span_min = (t["last_mjd"] - t["first_mjd"]) * 1440.0
            if span_min < 2.0 * s.match_radius_arcsec / s.min_rate_arcsec_min:
                continue
            sightings = self.log_db.query(
                "SELECT id, track_id, mag, real_bogus, exposure_id FROM difference_candidates "
                "WHERE transient_id = ? AND kind = 'detection' ORDER BY id",
                (tid,),
            )
            if any(r["track_id"] is not None or r["id"] in tracked for r in sightings):
                continue
            host = self._host(t, reference_id)
            alerts.append(self._transient_alert(t, field, host, exposure_id, sightings))
            update_transient(self.log_db, tid, {"alerted": 1, **host})
        return alerts

    def _footprint(self, reference_id: int) -> float | None:
        """Return the sky area of the field's reference (arcsec^2), None when unknown.

        Chance alignments of candidates are counted over it (`link_tracks`).
        """
        if reference_id in self._areas:
            return self._areas[reference_id]
        rows = self.log_db.query("SELECT path FROM reference_images WHERE id = ?", (reference_id,))
        area = None
        if rows and self.data_dir is not None:
            try:
                header = fits.getheader(self.data_dir.path(rows[0]["path"]))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    scale = proj_plane_pixel_scales(WCS(header).celestial) * 3600.0
                area = float(header["NAXIS1"] * header["NAXIS2"] * scale[0] * scale[1])
            except (OSError, KeyError, ValueError) as exc:
                log.warning("reference %d: no footprint (%s)", reference_id, exc)
        self._areas[reference_id] = area
        return area

    def _host(self, transient: dict[str, Any], reference_id: int) -> dict[str, Any]:
        """Return the host's columns: the nearest galaxy near the transient, if any.

        Galaxies are the reference's extended sources (it is deeper than any frame) and the
        sources of its grid frame the classifier called galaxies.
        """
        rows = self.log_db.query(
            "SELECT grid_exposure_id, path FROM reference_images WHERE id = ?", (reference_id,)
        )
        if not rows:
            return {}
        ra, dec = transient["ra_deg"], transient["dec_deg"]
        galaxies = galaxies_near(
            self.log_db, rows[0]["grid_exposure_id"], ra, dec, _HOST_RADIUS_ARCSEC
        )
        galaxies += self._extended(reference_id, rows[0]["path"], ra, dec)
        found = host_offset(ra, dec, galaxies)
        if found is None:
            return {}
        galaxy, offset, pa = found
        return {
            "host_ra_deg": galaxy["ra_deg"], "host_dec_deg": galaxy["dec_deg"],
            "host_offset_arcsec": offset, "host_pa_deg": pa,
        }  # fmt: skip

    def _extended(
        self, reference_id: int, path: str, ra_deg: float, dec_deg: float
    ) -> list[dict[str, Any]]:
        """Return the reference catalog's extended sources near a position."""
        if self.data_dir is None:
            return []
        if self._reference_catalog is None or self._reference_catalog[0] != reference_id:
            try:
                table = Table.read(self.data_dir.path(path), hdu="CATALOG")
            except (OSError, ValueError, KeyError) as exc:
                log.warning("reference %d: catalog unreadable (%s)", reference_id, exc)
                return []
            if "extended" not in table.colnames:
                return []
            table = table[np.asarray(table["extended"], dtype=bool)]
            self._reference_catalog = (reference_id, table)
        table = self._reference_catalog[1]
        distance = separation_arcsec(table["ra_deg"], table["dec_deg"], ra_deg, dec_deg)
        near = table[distance <= _HOST_RADIUS_ARCSEC]
        return [{"ra_deg": float(r["ra_deg"]), "dec_deg": float(r["dec_deg"])} for r in near]

    def _transient_alert(
        self,
        transient: dict[str, Any],
        field: str,
        host: dict[str, Any],
        exposure_id: int,
        sightings: list[dict[str, Any]],
    ) -> Alert:
        """Return the alert of a transient seen often enough, with its host and cutouts."""
        last = sightings[-1]
        where = (
            f", {host['host_offset_arcsec']:.1f} arcsec from a galaxy (PA "
            f"{host['host_pa_deg']:.0f} deg)"
            if host
            else ", no galaxy within 15 arcsec"
        )
        mag = transient["peak_mag"]
        text = "" if mag is None else f" at {mag:.2f} mag"
        details = {
            "transient": transient["id"],
            "candidate": last["id"],
            "real_bogus": last["real_bogus"],
            "detections": [r["id"] for r in sightings],
            "cutouts": f"/api/candidates/{last['id']}/cutouts.png",
            **host,
        }
        return Alert(
            kind="transient",
            field=field,
            target=f"transient {transient['id']}",
            object_id=None,
            exposure_id=exposure_id,
            mjd=transient["last_mjd"],
            mag=mag,
            delta_mag=None,
            significance=None,
            message=f"transient in {field}{text}, seen on {len(sightings)} frames{where}",
            dedup_key=f"transient:{transient['id']}",
            ra_deg=transient["ra_deg"],
            dec_deg=transient["dec_deg"],
            details=details,
        )


def night_mpc_report(log_db: ExposureLog, night: str, *, observatory_code: str) -> tuple[str, int]:
    """Return a night's moving objects as an MPC 80-column report.

    Each stored moving object is one temporary designation (``M`` and its id, zero padded);
    its lines are its linked detections' own times, positions and magnitudes
    (`obsctl.timeseries.moving.mpc_report`), in time order, after a ``COD`` header line. A
    detection through a filter the MPC has no band for (a clear filter) keeps its position
    and leaves the magnitude and band blank.

    Parameters
    ----------
    log_db : ExposureLog
        The exposure log.
    night : str
        The night (``YYYY-MM-DD``).
    observatory_code : str
        The MPC observatory code, three letters or digits.

    Returns
    -------
    report : str
        The report (only the header when the night has no moving object).
    observations : int
        The lines of observations in it.

    Raises
    ------
    ValueError
        If the code is not three letters or digits.
    """
    blocks: list[str] = []
    header = {"ACK": f"obsctl moving objects of {night}"}
    head = mpc_report([], np.zeros(0, DETECTION_DTYPE), observatory_code=observatory_code,
                      designation_prefix=_MPC_PREFIX, band="V", header=header)  # fmt: skip
    for obj in moving_objects(log_db, night):
        rows = [r for r in track_detections(log_db, int(obj["id"])) if r["ra_deg"] is not None]
        if not rows:
            continue
        detections = _detections_array(rows)
        lines: list[str] = []
        # One band a call: a track seen through two filters is written as two runs of lines.
        for band in sorted({str(r["filter"] or "") for r in rows}):
            members = [i for i, r in enumerate(rows) if str(r["filter"] or "") == band]
            known = band in MPC_BANDS and len(band) == 1
            track = Track(
                indices=tuple(members), epoch_mjd=float(obj["epoch_mjd"]),
                ra_deg=float(obj["ra_deg"]), dec_deg=float(obj["dec_deg"]),
                rate_arcsec_min=float(obj["rate_arcsec_min"]), pa_deg=float(obj["pa_deg"]),
                mag=math.nan, mag_err=math.nan, rms_arcsec=float(obj["rms_arcsec"]),
                chance_tracks=math.nan,
            )  # fmt: skip
            text = mpc_report(
                [track], detections, observatory_code=observatory_code,
                designation_prefix=_MPC_PREFIX, band=band if known else "V",
                first_number=int(obj["id"]),
            )  # fmt: skip
            for line in text.splitlines():
                lines.append(line if known else line[: _MPC_MAG.start] + " " * 6 + line[71:])
        # Columns 16-32, the date, sort as text: the object's lines in time order.
        lines.sort(key=lambda line: line[15:32])
        blocks.extend(lines)
    return head + "".join(f"{line}\n" for line in blocks), len(blocks)
