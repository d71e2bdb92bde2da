"""Sky brightness of the simulated camera from the sun and the moon at the simulated time.

Twilight makes dusk and dawn sky flats possible and moonlight brightens the background, so
a simulated night looks like a night. The ephemeris is computed once per night (about a
second) and cached; each frame then costs a few interpolations.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from obsctl.config import SiteConfig
from obsctl.night.ephemeris import NightEphemeris, cached_night

__all__ = ["SunMoonSky"]

log = logging.getLogger(__name__)


class SunMoonSky:
    """Callable V-band sky brightness (mag/arcsec2) at ``(time, ra_deg, dec_deg)``.

    Other filters add the dark sky's colour to it
    (`obsctl.simulators.camera_model.sky_scene`, ``SimulatedSkyConfig.sky_offset_mag_arcsec2``).

    Parameters
    ----------
    site : SiteConfig
        Where the telescope stands.
    dark_mag_arcsec2 : float
        Moonless night-sky brightness in mag/arcsec2.
    """

    def __init__(self, site: SiteConfig, dark_mag_arcsec2: float) -> None:
        self.site = site
        self.dark_mag_arcsec2 = dark_mag_arcsec2

    def ephemeris(self, when: datetime) -> NightEphemeris:
        """Return the ephemeris of the night (noon to noon, local mean time) containing ``when``."""
        local = when + timedelta(hours=self.site.longitude_deg / 15.0 - 12.0)
        return cached_night(self.site, local.date())

    def __call__(self, when: datetime, ra_deg: float, dec_deg: float) -> float:
        """Return the sky brightness toward ``ra_deg, dec_deg`` (deg) at ``when``."""
        return self.ephemeris(when).sky_mag(when, ra_deg, dec_deg, self.dark_mag_arcsec2)
