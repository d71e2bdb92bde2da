"""Time-series monitoring: light curves, variability statistics, alerts and exports."""

from obsctl.timeseries.alerts import Alert
from obsctl.timeseries.monitor import LightCurveMonitor
from obsctl.timeseries.store import list_alerts, list_light_curves, load_light_curve

__all__ = ["Alert", "LightCurveMonitor", "list_alerts", "list_light_curves", "load_light_curve"]
