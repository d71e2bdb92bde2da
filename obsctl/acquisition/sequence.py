"""Observing sequences: what to take, validated like the config.

A sequence is a list of steps. A step takes ``count`` frames of one kind (light, dark, bias or
flat) with one filter, exposure time, binning and gain. An observation sequence has a target
and its light steps slew there first; a calibration sequence has bias, dark and flat steps and
no target. Flat steps adjust their exposure time to reach a target level.

Sequences are written in TOML (``[[steps]]`` tables) or built in code, and stored as JSON in
the exposure log so that a restarted daemon resumes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from obsctl.config import (
    HeaderText,
    NotEmpty,
    check_document_size,
    format_validation_error,
    read_toml,
)
from obsctl.errors import ConfigError

__all__ = [
    "MAX_EXPOSURE_S",
    "MAX_SEQUENCE_VALUES",
    "MAX_STEPS",
    "ExposureStep",
    "Sequence",
    "Target",
    "load_sequence",
    "parse_sequence",
]

ImageType = Literal["LIGHT", "DARK", "BIAS", "FLAT"]

#: Longest exposure a step may ask for (s); the camera's own maximum is checked before each
#: exposure (`obsctl.operations.Operations.expose`).
MAX_EXPOSURE_S = 86_400.0
#: Most steps in one sequence.
MAX_STEPS = 1000
#: Most values (keys, items, numbers, texts) in a sequence document: a thousand steps with
#: every field given hold 13 000. Requests' sequences are validated while the daemon runs
#: (holding the GIL), so this stays well below `obsctl.config.MAX_DOCUMENT_VALUES`.
MAX_SEQUENCE_VALUES = 20 * MAX_STEPS


class _Model(BaseModel):
    # Non-finite numbers would pass every bound and be stored as null (see obsctl.config).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Target(_Model):
    """A pointing: name and J2000 (ICRS) coordinates in degrees."""

    name: HeaderText = Field(min_length=1)
    ra_deg: float = Field(ge=0, lt=360)
    dec_deg: float = Field(ge=-90, le=90)


class ExposureStep(_Model):
    """``count`` frames of one kind and one set of camera settings.

    For ``FLAT`` steps ``exposure_s`` is the first guess; the exposure is scaled until the
    median reaches ``flat_target_adu`` within ``flat_tolerance`` (a fraction) and kept within
    ``[flat_min_exposure_s, flat_max_exposure_s]``. A flat with ``panel_brightness_pct`` is
    taken from the flat panel (the cover calibrator, cover closed, lamp on at that
    brightness: a first guess too) with the roof closed, day or night; when the exposure
    limits cannot reach the level, the lamp's brightness is scaled instead.
    """

    image_type: ImageType = "LIGHT"
    filter: HeaderText | None = Field(default=None, min_length=1)
    exposure_s: float = Field(default=0.0, ge=0, le=MAX_EXPOSURE_S, description="[s]")
    count: int = Field(default=1, ge=1, le=100_000)
    bin: int = Field(default=1, ge=1, le=16)
    gain: int | None = Field(default=None, ge=0, le=100_000, description="camera setting")
    offset: int | None = Field(default=None, ge=0, le=100_000, description="camera setting")
    readout_mode: int | None = Field(default=None, ge=0, le=1000)
    flat_target_adu: float = Field(default=25000.0, gt=0, le=2**32)
    flat_tolerance: float = Field(default=0.15, gt=0, lt=1)
    flat_min_exposure_s: float = Field(default=0.01, gt=0, le=MAX_EXPOSURE_S, description="[s]")
    flat_max_exposure_s: float = Field(default=60.0, gt=0, le=MAX_EXPOSURE_S, description="[s]")
    panel_brightness_pct: float | None = Field(
        default=None, gt=0, le=100, description="[%] FLAT only: from the flat panel, this bright"
    )

    @property
    def sees_sky(self) -> bool:
        """Whether the frame takes the sky's light (a light, a sky flat): the roof must open."""
        return self.image_type == "LIGHT" or (
            self.image_type == "FLAT" and self.panel_brightness_pct is None
        )

    @model_validator(mode="after")
    def _exposure_fits_type(self) -> ExposureStep:
        if self.image_type in ("LIGHT", "DARK", "FLAT") and self.exposure_s <= 0:
            raise ValueError(f"{self.image_type} steps need exposure_s > 0")
        if self.panel_brightness_pct is not None and self.image_type != "FLAT":
            raise ValueError(f"panel_brightness_pct is for FLAT steps, not {self.image_type}")
        if self.flat_min_exposure_s > self.flat_max_exposure_s:
            raise ValueError(
                f"flat_min_exposure_s ({self.flat_min_exposure_s:g}) is above "
                f"flat_max_exposure_s ({self.flat_max_exposure_s:g})"
            )
        return self


class Sequence(_Model):
    """A named list of steps, with a target when it takes light frames of the sky."""

    # Long enough for the night runner's names: "<plan name>: <target name>".
    name: str = Field(min_length=1, max_length=200)
    target: Target | None = None
    steps: Annotated[tuple[ExposureStep, ...], NotEmpty] = Field(max_length=MAX_STEPS)
    dither_arcsec: float = Field(
        default=0.0, ge=0, le=3600, description="[arcsec] random offset between frames"
    )
    dither_px: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="[camera pixels] dither amplitude: the random disc's radius, the spiral's "
        "step (instead of dither_arcsec)",
    )
    dither_pattern: Literal["random", "spiral"] = "random"
    dither_every: int = Field(default=1, ge=1, le=100_000)
    dither_settle_s: float = Field(
        default=0.0, ge=0, le=600, description="[s] wait after each dither's slew"
    )

    @model_validator(mode="after")
    def _one_dither_unit(self) -> Sequence:
        if self.dither_arcsec > 0 and self.dither_px > 0:
            raise ValueError("give dither_arcsec or dither_px, not both")
        return self

    @model_validator(mode="after")
    def _lights_need_target(self) -> Sequence:
        if self.target is None and any(s.image_type == "LIGHT" for s in self.steps):
            raise ValueError("a sequence with LIGHT steps needs a [target]")
        return self

    @property
    def total_frames(self) -> int:
        """Frames over all steps."""
        return sum(s.count for s in self.steps)


def parse_sequence(data: dict[str, Any], *, source: str = "<sequence>") -> Sequence:
    """Validate a sequence mapping (from TOML or JSON).

    Raises
    ------
    ConfigError
        Naming the source, the key path and what was expected.
    """
    check_document_size(data, limit=MAX_SEQUENCE_VALUES, source=source, what="sequence")
    try:
        return Sequence.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(Path(source), exc, data, what="sequence"), path=source
        ) from exc


def load_sequence(path: str | Path) -> Sequence:
    """Load and validate a sequence TOML file; a `ConfigError` says what is wrong where."""
    return parse_sequence(read_toml(Path(path)), source=str(path))
