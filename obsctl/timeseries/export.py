"""Light-curve exports (CSV, ECSV, AAVSO Extended File Format) and PNG plots, plain or folded."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from obsctl.timeseries.periods import PeriodSearchResult, folded_model

__all__ = ["plot_folds", "plot_light_curve", "to_aavso", "to_table", "write_light_curve"]

log = logging.getLogger(__name__)

_COLUMNS = ("mjd", "bjd_tdb", "mag", "mag_err", "filter", "flag", "airmass", "exposure_id",
            "quality")  # fmt: skip
_UNITS = {"mjd": "d", "bjd_tdb": "d", "mag": "mag", "mag_err": "mag"}


def to_table(target: str, points: Sequence[dict[str, Any]]) -> Table:
    """Return the points as an astropy Table with units and the target in its meta."""
    table = Table(rows=[[p.get(c) for c in _COLUMNS] for p in points] or None, names=_COLUMNS)
    for name, unit in _UNITS.items():
        table[name].unit = unit
    table.meta["target"] = target
    table.meta["comments"] = [
        "mag: differential magnitude on the calibrated scale; flag 0 is good "
        "(1 photometry flagged, 2 bad frame, 4 no comparison ensemble)"
    ]
    return table


def to_aavso(
    target: str,
    points: Sequence[dict[str, Any]],
    *,
    observer_code: str = "XXX",
    software: str = "obsctl",
    comp_name: str = "ENSEMBLE",
) -> str:
    """Return the light curve in the AAVSO Extended File Format (BJD dates, ensemble).

    Points without a magnitude are left out; flagged points are kept with a note.
    """
    lines = [
        "#TYPE=EXTENDED",
        f"#OBSCODE={observer_code}",
        f"#SOFTWARE={software}",
        "#DELIM=,",
        "#DATE=BJD",
        "#OBSTYPE=CCD",
        "#NAME,DATE,MAG,MERR,FILT,TRANS,MTYPE,CNAME,CMAG,KNAME,KMAG,AMASS,GROUP,CHART,NOTES",
    ]
    for p in points:
        if p.get("mag") is None:
            continue
        airmass = p.get("airmass")
        note = "na" if not p.get("flag") else f"flag={p['flag']}"
        lines.append(
            ",".join([
                target, f"{p['bjd_tdb']:.6f}", f"{p['mag']:.4f}", f"{p['mag_err']:.4f}",
                str(p.get("filter") or "CV"), "NO", "STD", comp_name, "na", "na", "na",
                "na" if airmass is None else f"{airmass:.4f}", "na", "na", note,
            ])
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def write_light_curve(
    target: str, points: Sequence[dict[str, Any]], fmt: str, out: Path | None = None
) -> str:
    """Render the light curve as ``csv``, ``ecsv`` or ``aavso``; write it when `out` is given.

    Raises
    ------
    ValueError
        For an unknown format.
    """
    if fmt == "aavso":
        text = to_aavso(target, points)
    elif fmt in ("csv", "ecsv"):
        buffer = io.StringIO()
        to_table(target, points).write(buffer, format="ascii." + fmt)
        text = buffer.getvalue()
    else:
        raise ValueError(f"unknown format {fmt!r}; expected csv, ecsv or aavso")
    if out is not None:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(out)
    return text


def plot_light_curve(
    target: str, points: Sequence[dict[str, Any]], out: Path, *, period_d: float | None = None
) -> None:
    """Write a PNG of the light curve: errors, one colour per filter, flagged points hollow.

    With a period the curve is folded (phase from the first point, BJD_TDB).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    good = [p for p in points if p.get("mag") is not None]
    t0 = min((p["bjd_tdb"] for p in good), default=0.0)
    for k, name in enumerate(sorted({str(p.get("filter")) for p in good})):
        sel = [p for p in good if str(p.get("filter")) == name]
        t = np.array([p["bjd_tdb"] for p in sel]) - (t0 if period_d else 2400000.5)
        x = np.mod(t / period_d, 1.0) if period_d else t
        mag = np.array([p["mag"] for p in sel])
        err = np.array([p["mag_err"] or 0.0 for p in sel])
        bad = np.array([bool(p.get("flag")) for p in sel])
        colour = f"C{k}"
        ax.errorbar(x[~bad], mag[~bad], err[~bad], fmt="o", ms=3, color=colour, label=name)
        if bad.any():
            ax.errorbar(x[bad], mag[bad], err[bad], fmt="o", ms=3, mfc="none", color=colour,
                        label=f"{name} (flagged)")  # fmt: skip
    ax.invert_yaxis()
    ax.set_ylabel("mag")
    if period_d and math.isfinite(period_d):
        ax.set_xlabel(f"phase (P = {period_d:.6f} d)")
    else:
        ax.set_xlabel("BJD_TDB - 2400000.5")
    ax.set_title(target)
    if good:
        ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")


def _family(origin: str) -> str:
    """Return the periodogram a candidate came from: ``ls``, ``ls-multi`` or ``bls``."""
    head = origin.split(":", 1)[0]
    return "ls-multi" if head.startswith("ls-multi") else head


def plot_folds(
    target: str, points: Sequence[dict[str, Any]], result: PeriodSearchResult, out: Path
) -> dict[str, float]:
    """Write a PNG of the light curve folded on each method's best period, one panel each.

    One panel per periodogram (one-term and multi-term Lomb-Scargle, box search) at the best
    period that method proposed (aliases included), two cycles from the chosen epoch; the
    chosen model is drawn over its panel, whose title is marked.

    Parameters
    ----------
    target : str
        Name for the title.
    points : sequence of dict
        The light curve (`load_light_curve`); points without a magnitude are left out,
        flagged ones drawn hollow.
    result : PeriodSearchResult
        The period search of these points (`search_period`).
    out : pathlib.Path
        The PNG file.

    Returns
    -------
    dict of str to float
        The period (day) of each panel, by method, the chosen method first.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    best: dict[str, float] = {}
    for c in result.candidates:  # best first
        best.setdefault(_family(c.origin), c.period_d)
    chosen = _family(result.candidates[0].origin) if result.candidates else "ls"
    best[chosen] = result.period_d
    panels = [f for f in ("ls", "ls-multi", "bls") if f in best]
    fig = Figure(figsize=(4.0 * len(panels), 4.0), dpi=100)
    good = [p for p in points if p.get("mag") is not None]
    t = np.array([p["bjd_tdb"] - 2400000.5 for p in good])
    mag = np.array([p["mag"] for p in good])
    err = np.array([p["mag_err"] or 0.0 for p in good])
    bad = np.array([bool(p.get("flag")) for p in good])
    for i, family in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        period = best[family]
        phase = np.mod((t - result.epoch) / period, 1.0)
        for shift in (0.0, 1.0):
            ax.errorbar(phase[~bad] + shift, mag[~bad], err[~bad], fmt="o", ms=2, color="C0")
            if bad.any():
                ax.errorbar(phase[bad] + shift, mag[bad], err[bad], fmt="o", ms=2, mfc="none",
                            color="C0")  # fmt: skip
        mark = ""
        if family == chosen:
            model_phase, model = folded_model(result)
            for shift in (0.0, 1.0):
                ax.plot(model_phase + shift, model, color="C3", lw=1.5)
            mark = " (chosen)"
        ax.set_title(f"{family}: P = {period:.6f} d{mark}", fontsize="small")
        ax.set_xlabel("phase")
        ax.invert_yaxis()
    fig.axes[0].set_ylabel("mag")
    fap = result.false_alarm
    # Below double precision's resolution of 1 - p, a FAP is "0": say how small instead.
    fap_text = "< 1e-16" if fap < 1e-16 else f"{fap:.2g}"
    fig.suptitle(f"{target}: {result.method}, false-alarm probability {fap_text}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return {chosen: best[chosen]} | {f: best[f] for f in panels}
