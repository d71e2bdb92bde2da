"""Acquisition: from a queued sequence to a downloaded frame handed to the store.

- `sequence`: what to take (target, steps), validated like the config;
- `sequencer`: runs a sequence's steps on the devices (safety gate, slew, filter, expose,
  download) through `obsctl.operations`, and hands each frame to `obsctl.store.writer`;
- `policy`: what a failed device call costs (retry, reconnect, skip the step);
- `health`: which devices are up or down, and their reconnection in the background (a
  device down costs only the steps that need it);
- `safety`: the supervisor beside the sequencer (abort, stop tracking, park when unsafe);
- `activity`: what is happening now, shared with the supervisor and the control API.
"""
