"""Acquisition: sequences, the sequencer, the fault policy and the safety supervisor."""
