"""Deliver alerts to the configured sinks: a webhook (HTTP POST) and a command (subprocess).

A failing sink is logged and recorded on the alert; it never stops the pipeline or the night.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import aiohttp

from obsctl.config import AlertSinkConfig, CommandSinkConfig, WebhookSinkConfig
from obsctl.store.exposure_log import ExposureLog
from obsctl.timeseries.alerts import Alert
from obsctl.timeseries.store import LightCurveStore

__all__ = ["deliver_alert", "deliver_alerts"]

log = logging.getLogger(__name__)


async def _webhook(sink: WebhookSinkConfig, payload: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=sink.timeout_s)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(sink.url, data=payload, headers={"Content-Type": "application/json"}) as reply,
    ):
        if reply.status >= 300:
            raise RuntimeError(f"HTTP {reply.status}")


async def _command(sink: CommandSinkConfig, payload: bytes) -> None:
    proc = await asyncio.create_subprocess_exec(
        *sink.command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(payload), sink.timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"timed out after {sink.timeout_s} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {err.decode(errors='replace')[:200]}")


async def deliver_alert(alert: Alert, sinks: Sequence[AlertSinkConfig]) -> list[str]:
    """Send one alert to every sink; return one ``"<sink>: ok"`` or ``"<sink>: <error>"`` each."""
    payload = json.dumps(alert.to_dict()).encode()
    results = []
    for sink in sinks:
        name = sink.url if isinstance(sink, WebhookSinkConfig) else sink.command[0]
        try:
            if isinstance(sink, WebhookSinkConfig):
                await _webhook(sink, payload)
            else:
                await _command(sink, payload)
            results.append(f"{sink.kind} {name}: ok")
        except (OSError, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
            log.warning("alert %s: %s sink %s failed: %s", alert.dedup_key, sink.kind, name, exc)
            results.append(f"{sink.kind} {name}: {type(exc).__name__}: {exc}")
    return results


async def deliver_alerts(
    alerts: Sequence[Alert], sinks: Sequence[AlertSinkConfig], log_db: ExposureLog | None = None
) -> None:
    """Send alerts to the sinks and record the outcome on each stored alert."""
    store = None if log_db is None else LightCurveStore(log_db)
    for alert in alerts:
        results = await deliver_alert(alert, sinks)
        if store is not None and results:
            await asyncio.to_thread(store.mark_delivered, alert.dedup_key, "; ".join(results))
