"""Deliver alerts to the configured sinks: a webhook (HTTP POST) and a command (subprocess).

The sinks themselves live in `obsctl.notify`, which the daemon's operational notices use too.
A failing sink is logged and recorded on the alert; it never stops the pipeline or the night.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from obsctl.config import AlertSinkConfig
from obsctl.notify import send
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.alerts import Alert
from obsctl.timeseries.store import LightCurveStore

__all__ = ["deliver_alert", "deliver_alerts", "send"]

log = logging.getLogger(__name__)


async def deliver_alert(alert: Alert, sinks: Sequence[AlertSinkConfig]) -> list[str]:
    """Send one alert to every sink; return one ``"<sink>: ok"`` or ``"<sink>: <error>"`` each."""
    return await send(alert.to_dict(), sinks, f"alert {alert.dedup_key}")


async def deliver_alerts(
    alerts: Sequence[Alert], sinks: Sequence[AlertSinkConfig], log_db: ExposureLog | None = None
) -> None:
    """Send alerts to the sinks and record the outcome on each stored alert."""
    store = None if log_db is None else LightCurveStore(log_db)
    for alert in alerts:
        results = await deliver_alert(alert, sinks)
        if store is not None and results:
            await asyncio.to_thread(store.mark_delivered, alert.dedup_key, "; ".join(results))
