"""Nights: from a plan to sequences queued on the daemon, night after night.

- `plan`: targets, constraints, repeats and calibration blocks (TOML, validated);
- `ephemeris`: the sun and moon of a night at the site, offline;
- `schedule`: pure merit and constraint logic, and the predicted timeline;
- `progress`: one row per visit (``plan_visits``), so a restart repeats nothing;
- `runner`: the APScheduler night (dusk, night, dawn) driving the daemon through a protocol;
- `timeline`: ``obsctl plan check`` and the faster-than-real clock of a simulated night.
"""
