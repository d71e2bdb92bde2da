"""Nights: plans, ephemeris, the schedule, plan progress and the night runner."""
