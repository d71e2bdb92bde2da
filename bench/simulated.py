"""A benchmark's simulated observatory: Alpaca simulators on free ports, real-time clock.

Shared by the benchmarks that run a whole daemon (``acquisition.py``, ``quicklook.py``).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from obsctl.acquisition.sequence import Target
from obsctl.config import Config
from obsctl.simulators.mount_model import local_sidereal_time_deg

LONGITUDE = -17.88


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_config(data: Path, width: int, height: int, **sections: dict[str, Any]) -> Config:
    """A config with a ``width`` x ``height`` simulated camera; ``sections`` are added."""
    port = free_port()
    alpaca = {
        "driver": "alpaca",
        "address": f"127.0.0.1:{port}",
        "timeout_s": 5.0,
        "download_timeout_s": 120.0,
    }
    return Config.model_validate(
        {
            "version": 1,
            "site": {"name": "bench", "latitude_deg": 28.76, "longitude_deg": LONGITUDE},
            "telescope": {"focal_length_mm": 800, "aperture_mm": 200},
            "data": {"directory": str(data)},
            "server": {"port": free_port()},
            "devices": {
                r: dict(alpaca) for r in ("camera", "filter_wheel", "mount", "safety_monitor")
            },
            "sequencer": {"poll_s": 0.02},
            "simulator": {
                "start": "always",
                "port": port,
                "discovery_port": None,
                "speed": 1.0,
                "camera": {"width_px": width, "height_px": height, "readout_time_s": 0.0},
                "mount": {"slew_rate_deg_s": 30.0, "settle_s": 0.0},
            },
            **sections,
        }
    )


def overhead_target() -> Target:
    """A field just past the meridian now (the clock is real time)."""
    lst = local_sidereal_time_deg(datetime.now(UTC), LONGITUDE)
    return Target(name="bench field", ra_deg=(lst + 5.0) % 360.0, dec_deg=30.0)
