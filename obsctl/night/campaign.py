"""Night after night: ``obsctl run --plan PLAN`` (or ``[night] plan``) runs every night of a plan.

A `Campaign` runs one `obsctl.night.runner.NightRunner` per night on a running daemon: the
runner sleeps through the day on the daemon's clock (the simulated one when the simulators
run faster than real time), starts at dusk (start hooks, cooler, dusk flats; the first slew
of the night, the flat field's or a target's, unparks), observes, ends at dawn (dawn flats,
park, darks and bias, warm-up, end hooks), and the campaign goes on with the next night.
The plan file is followed through `obsctl.night.control.NightControl`
(edits, targets of opportunity, the step shown by ``obsctl status``). A night whose sun never
reaches the plan's limits, or whose runner fails with an obsctl error, is logged and skipped;
the campaign goes on with the next one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, time, timedelta

from obsctl.clock import night_of, parse_night
from obsctl.errors import ObsctlError, ScheduleError
from obsctl.night.control import NightControl
from obsctl.night.ephemeris import cached_night
from obsctl.night.runner import NightHost, NightRunner, NightSummary, drive
from obsctl.night.schedule import NightSchedule

__all__ = ["Campaign", "first_night", "run_campaign"]

log = logging.getLogger(__name__)


def first_night(host: NightHost, control: NightControl) -> date:
    """Return the night to start with: tonight, or tomorrow night when tonight's is over."""
    site = host.config.site
    now = host.clock.now()
    night = parse_night(night_of(now, site.longitude_deg))
    end = NightSchedule(control.plan, cached_night(site, night)).night_end
    if end is not None and now > end:
        night += timedelta(days=1)
    return night


def _noon_after(night: date, longitude_deg: float) -> datetime:
    """Return the local-mean noon that ends ``night`` (UTC)."""
    noon = datetime.combine(night + timedelta(days=1), time(12), tzinfo=UTC)
    return noon - timedelta(hours=longitude_deg / 15.0)


class Campaign:
    """Runs the nights of a plan one after the other on a running daemon.

    Parameters
    ----------
    daemon : NightHost
        The daemon (its ``run`` in progress, or soon).
    control : NightControl
        The plan, its file, targets of opportunity and hooks.
    night : datetime.date or None
        The first night; None takes tonight (tomorrow night once tonight's is over).
    nights : int or None
        How many nights to run; None runs until the daemon stops.
    """

    def __init__(
        self,
        daemon: NightHost,
        control: NightControl,
        *,
        night: date | None = None,
        nights: int | None = None,
    ) -> None:
        self.daemon = daemon
        self.control = control
        self.night = night
        self.nights = nights
        #: The nights run so far, in order.
        self.summaries: list[NightSummary] = []
        #: The nights skipped (the sun never low enough, a failed runner) and why.
        self.skipped: list[tuple[str, str]] = []

    async def run(self) -> list[NightSummary]:
        """Run the nights (all of ``nights``, or until cancelled); return their summaries."""
        daemon = self.daemon
        await daemon.started.wait()
        self.control.publish = daemon.running.events.publish
        night = self.night
        if night is None:
            night = await asyncio.to_thread(first_night, daemon, self.control)
        while self.nights is None or len(self.summaries) + len(self.skipped) < self.nights:
            self.control.drop_before(night)
            runner = NightRunner(daemon, self.control.plan, night, control=self.control)
            log.info("night %s of plan %s", night, self.control.plan.name)
            try:
                self.summaries.append(await runner.run())
            except ObsctlError as exc:
                self.skipped.append((night.isoformat(), str(exc)))
                log.error("night %s skipped: %s", night, exc)
                daemon.running.events.publish(
                    "night", event="skipped", night=night.isoformat(), reason=str(exc)
                )
                if isinstance(exc, ScheduleError):
                    await self._sleep_past(night)
            night += timedelta(days=1)
        return self.summaries

    async def _sleep_past(self, night: date) -> None:
        """Wait until ``night`` is over (noon after it): its runner scheduled nothing."""
        end = _noon_after(night, self.daemon.config.site.longitude_deg)
        self.control.set_step(night.isoformat(), "no night (sun too high)", until=end)
        delta = (end - self.daemon.clock.now()).total_seconds()
        if delta > 0:
            await self.daemon.clock.sleep(delta)


async def run_campaign(
    campaign: Campaign, *, install_signal_handlers: bool = True
) -> list[NightSummary]:
    """Run the campaign's daemon for its nights; stop it after the last (or on a signal).

    With ``nights`` the daemon stops once they are run and their frames processed; without,
    it runs until stopped (SIGINT/SIGTERM), which ends the night in progress as a shutdown
    does (exposure aborted, frames stored, mount parked; a restart resumes the night).

    Raises
    ------
    ScheduleError
        When ``nights`` were asked and the daemon stopped before they were run.
    """
    ended, summaries = await drive(
        campaign.daemon, campaign.run(), "nights", install_signal_handlers=install_signal_handlers
    )
    if ended and summaries is not None:
        return summaries
    if campaign.nights is not None:
        raise ScheduleError(
            f"the daemon stopped after {len(campaign.summaries)} of {campaign.nights} night(s)"
        )
    return campaign.summaries
