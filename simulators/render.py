"""Image formation for one exposure of the simulated CCD/CMOS camera.

Everything is computed in electrons and converted to ADU at the end, in the order the charge
travels: photons (stars, galaxies, a satellite trail and sky, or a flat lamp) times the
flat-field response, dead columns and a colour sensor's filters, bleeding of saturated charge
along the columns (CCD), charge binning, dark current with hot pixels and hot columns,
cosmic-ray deposits, shot noise, read noise, saturation, gain, bias with column structure and
row noise. Fixed-pattern features (flat field, hot pixels, bad and biased columns) depend only
on the sensor's seed; noise, cosmic rays and satellites also depend on the exposure's seed.
Only the read area (subframe times binning) is ever computed. The image features beyond the
star field are drawn by `obsctl.simulators.artefacts`; each is off unless the scene or
sensor asks for it.

All functions are pure numeric code with no I/O and no printing; `render_exposure` digitises
row blocks on two worker threads (numpy releases the GIL), with results independent of them,
and draws the galaxies of a field on two threads once per field, band and seeing (cached).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from astropy.wcs import WCS
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from obsctl.simulators.artefacts import (
    BAD_COLUMN_DTYPE,
    BAYER_PATTERNS,
    GALAXY_TRUTH_DTYPE,
    SatelliteTrail,
    add_galaxies,
    apply_bad_columns,
    bad_columns,
    bayer_from_mono,
    bleed,
    galaxies,
    galaxy_mag,
    galaxy_stamp_radius_px,
    satellite_trail,
    sky_pa_to_image_deg,
)
from obsctl.simulators.atmosphere import (
    COLOUR_INDEX,
    colour_index,
    extinction_mag,
    seeing_fwhm_arcsec,
)
from obsctl.simulators.sky import BANDS, field_wcs, synthetic_catalog
from obsctl.simulators.transients import (
    ASTEROID_TRUTH_DTYPE,
    TRAILED_FWHM_FRACTION,
    TRANSIENT_TRUTH_DTYPE,
    Asteroid,
    Transient,
)
from obsctl.simulators.variables import VariableStar, add_variable_stars

log = logging.getLogger(__name__)

__all__ = [
    "STAR_TRUTH_DTYPE",
    "ExposureSpec",
    "RenderResult",
    "SensorModel",
    "SkyConditions",
    "SkyScene",
    "add_cosmic_rays",
    "add_stars",
    "bin_charge",
    "column_bias",
    "dark_current_e_s",
    "flat_response",
    "hot_pixel_map",
    "moffat_stamp",
    "render_exposure",
    "scene_wcs",
    "stamp_radius_px",
]

STAR_TRUTH_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("ra_deg", np.float64),
        ("dec_deg", np.float64),
        ("mag", np.float64),
        ("x", np.float64),
        ("y", np.float64),
        ("flux_e", np.float64),
        ("mag_b", np.float64),
        ("mag_v", np.float64),
        ("mag_r", np.float64),
        ("mag_i", np.float64),
        ("colour", np.float64),
        ("mag_inst", np.float64),
    ]
)
"""Row type of `RenderResult.stars`.

``x``, ``y`` are zero-based output pixels; ``mag`` is the catalog magnitude in the frame's
band and ``mag_b`` .. ``mag_i`` the star's catalog magnitudes (variables at the exposure's
time); ``colour`` is the catalog colour of the band's colour term
(`obsctl.simulators.atmosphere.COLOUR_INDEX`) and ``mag_inst = mag + colour_term * colour``
the instrumental magnitude above the atmosphere; ``flux_e`` is the star's total expected
electrons, ``t * transmission * 10**(-0.4 * (mag_inst + extinction_mag - zero_point_mag))``
with the frame's values in `RenderResult`.
"""

# Independent random streams, mixed into every seed so that no two features share draws.
_STREAM_FLAT = 1
_STREAM_PRNU = 2
_STREAM_HOT = 3
_STREAM_COLUMNS = 4
_STREAM_COSMICS = 5
_STREAM_ROWS = 6
_STREAM_NOISE = 7
_STREAM_TRAIL = 8

_GALAXY_MAX_RADIUS_PX = 200  # largest Sersic stamp (unbinned pixel), as `add_galaxies`
_GALAXIES_PER_THREAD = 200  # fewer galaxies than this are drawn on one thread
_GALAXY_FWHM_STEP = 0.01  # galaxies' seeing in steps of 1 % (log), so their layer is reused

_PRNU_BLOCK_ROWS = 64  # PRNU is drawn per fixed row block so any subframe sees the same pixels
_NOISE_BLOCK_ROWS = 256  # rows digitised at a time: bounds temporaries, keeps them in cache
_DIGITISE_THREADS = 2  # the simulator's target is a 2-core machine
_STAR_CHUNK = 2048  # stars whose stamps are built at once

_PSF_TABLE_STEPS = 16  # sub-pixel phases per pixel in the PSF look-up table
# Up to this many stars each is drawn from its own exact stamp: the phase table (17 x 17
# stamps, 0.1-0.2 s, built again whenever the seeing changes) cost 87 % of rendering the small
# frames of the tests and of fast-clock nights, which have a handful of stars.
_DIRECT_STARS = 32
# A blur circle smaller than this (pixel) is drawn as in focus: the seeing hides it.
_MIN_DEFOCUS_PX = 0.25
_MIN_STAMP_RADIUS_PX = 3
_MAX_STAMP_RADIUS_FWHM = 8.0
_STAMP_LOST_FLUX = 0.01  # flux allowed outside the stamp when the wings are heavy

# Shot noise is drawn exactly (Poisson) below this mean; above it one Gaussian of variance
# (signal + read noise^2) stands in for shot and read noise together (Poisson skewness there is
# under 0.2 and shrinks further under the read noise). numpy's own Poisson sampler would take
# several seconds per full frame, so small means use inverse-CDF look-up tables instead.
_POISSON_BELOW_E = 25.0
_POISSON_LEVELS_PER_E = 32  # table resolution in the mean
_POISSON_MAX_COUNT = 63  # P(K > 63 | mean 25) ~ 1e-9
_POISSON_GUIDE_BUCKETS = 32

_DARK_REFERENCE_C = -10.0
_ROW_NOISE_FRACTION = 0.1  # row-noise sigma as a fraction of the read noise
_COLUMN_BIAS_SIGMA_ADU = 2.0


@dataclass(frozen=True)
class SensorModel:
    """Fixed properties of a simulated sensor.

    Parameters
    ----------
    width_px, height_px : int
        Full sensor size in unbinned pixels.
    pixel_size_um : float
        Pixel pitch (micrometre).
    full_well_e : float
        Full-well capacity of one unbinned pixel (electrons).
    read_noise_e : float
        Nominal read noise (electrons RMS); the exposure's own value is what is used.
    bias_adu : float
        Bias level at offset 0 (ADU).
    adu_per_offset : float
        Bias added per unit of the camera's offset setting (ADU).
    dark_current_e_s : float
        Mean dark current at -10 degC (electrons per second per unbinned pixel).
    dark_doubling_c : float
        Temperature rise that doubles the dark current (degC).
    hot_pixel_fraction : float
        Fraction of pixels that are hot, in [0, 1).
    cosmic_rate_cm2_s : float
        Cosmic-ray hits per square centimetre per second.
    max_adu : int
        Largest value the ADC produces (ADU), e.g. 65535.
    seed : int
        Non-negative seed of the fixed-pattern features (flat field, hot pixels, column bias,
        bad columns).
    bleeds : bool, optional
        True for a CCD without anti-blooming: charge above the full well spills along the
        column (`obsctl.simulators.artefacts.bleed`). False (the default, a CMOS sensor)
        only clips at the full well.
    dead_columns, hot_columns : int, optional
        Number of dead and hot columns (`obsctl.simulators.artefacts.bad_columns`); 0, the
        default, for none.
    partial_column_fraction : float, optional
        Probability that a bad column starts part-way up the sensor, in [0, 1].
    bayer_pattern : str or None, optional
        Colour filter array of a one-shot-colour sensor at its pixel (0, 0), one of
        `obsctl.simulators.artefacts.BAYER_PATTERNS`; None (the default) is monochrome.
    bayer_throughput_rgb : tuple of float, optional
        Fraction of the clear-filter charge a red, green and blue pixel collects.
    """

    width_px: int
    height_px: int
    pixel_size_um: float
    full_well_e: float
    read_noise_e: float
    bias_adu: float
    adu_per_offset: float
    dark_current_e_s: float
    dark_doubling_c: float
    hot_pixel_fraction: float
    cosmic_rate_cm2_s: float
    max_adu: int
    seed: int
    bleeds: bool = False
    dead_columns: int = 0
    hot_columns: int = 0
    partial_column_fraction: float = 0.5
    bayer_pattern: str | None = None
    bayer_throughput_rgb: tuple[float, float, float] = (0.30, 0.40, 0.25)

    def __post_init__(self) -> None:
        if self.width_px <= 0 or self.height_px <= 0:
            raise ValueError("sensor width_px and height_px must be positive")
        if self.pixel_size_um <= 0.0 or self.full_well_e <= 0.0 or self.dark_doubling_c <= 0.0:
            raise ValueError("pixel_size_um, full_well_e and dark_doubling_c must be positive")
        if min(self.read_noise_e, self.dark_current_e_s, self.cosmic_rate_cm2_s) < 0.0:
            raise ValueError("read_noise_e, dark_current_e_s and cosmic_rate_cm2_s must be >= 0")
        if not 0.0 <= self.hot_pixel_fraction < 1.0:
            raise ValueError("hot_pixel_fraction must be within [0, 1)")
        if not 0 < self.max_adu <= 2**31 - 1:
            raise ValueError("max_adu must be within [1, 2**31 - 1]")
        if self.seed < 0:
            raise ValueError("sensor seed must be non-negative")
        if min(self.dead_columns, self.hot_columns) < 0:
            raise ValueError("dead_columns and hot_columns must be >= 0")
        if self.dead_columns + self.hot_columns > self.width_px:
            raise ValueError("more bad columns than the sensor has columns")
        if not 0.0 <= self.partial_column_fraction <= 1.0:
            raise ValueError("partial_column_fraction must be within [0, 1]")
        if self.bayer_pattern is not None and self.bayer_pattern not in BAYER_PATTERNS:
            raise ValueError(
                f"unknown bayer_pattern {self.bayer_pattern!r}; expected one of "
                f"{', '.join(BAYER_PATTERNS)} (upper case) or None"
            )
        if len(self.bayer_throughput_rgb) != 3 or min(self.bayer_throughput_rgb) < 0.0:
            raise ValueError("bayer_throughput_rgb must be three non-negative fractions")


@dataclass(frozen=True)
class ExposureSpec:
    """One exposure request, with the subframe as ASCOM defines it.

    Parameters
    ----------
    exposure_s : float
        Exposure time (s), >= 0. A bias is a dark of the camera's minimum exposure time.
    light : bool
        True for an open shutter; False renders a dark.
    bin_x, bin_y : int
        Binning factors (unbinned pixels per output pixel).
    start_x, start_y, num_x, num_y : int
        Subframe origin and size in binned pixels (ASCOM ``StartX``, ``StartY``, ``NumX``,
        ``NumY``); the read area is ``num_x * bin_x`` by ``num_y * bin_y`` unbinned pixels
        starting at ``(start_x * bin_x, start_y * bin_y)``.
    electrons_per_adu : float
        Gain of the readout mode (electrons per ADU).
    offset : int
        Offset setting; adds ``offset * adu_per_offset`` ADU of bias.
    ccd_temperature_c : float
        Sensor temperature during the exposure (degC).
    read_noise_e : float
        Read noise of the readout mode (electrons RMS).
    seed : int
        Non-negative per-exposure seed of the noise, cosmic rays and row noise.
    """

    exposure_s: float
    light: bool
    bin_x: int
    bin_y: int
    start_x: int
    start_y: int
    num_x: int
    num_y: int
    electrons_per_adu: float
    offset: int
    ccd_temperature_c: float
    read_noise_e: float
    seed: int

    def __post_init__(self) -> None:
        if self.exposure_s < 0.0:
            raise ValueError("exposure_s must be >= 0")
        if self.bin_x < 1 or self.bin_y < 1:
            raise ValueError("bin_x and bin_y must be >= 1")
        if self.start_x < 0 or self.start_y < 0 or self.num_x < 1 or self.num_y < 1:
            raise ValueError("start_x/start_y must be >= 0 and num_x/num_y >= 1")
        if self.electrons_per_adu <= 0.0 or self.read_noise_e < 0.0:
            raise ValueError("electrons_per_adu must be positive and read_noise_e >= 0")
        if self.seed < 0:
            raise ValueError("exposure seed must be non-negative")


@dataclass(frozen=True)
class SkyScene:
    """What the telescope sees during a light exposure.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Pointing at the centre of the full sensor (deg, ICRS).
    rotation_deg : float
        Sky rotation on the sensor (deg, as FITS ``CROTA2``).
    pixel_scale_arcsec : float
        Unbinned pixel scale (arcsec per pixel).
    seeing_arcsec : float
        FWHM of the stellar profile at the zenith (arcsec); at airmass X it is
        ``seeing_arcsec * X**seeing_airmass_exponent``.
    moffat_beta : float
        Moffat beta of the stellar profile, > 1 (2.5-4.8 is typical).
    sky_e_s_px : float
        Sky background under a clear sky (electrons per second per unbinned pixel): the sky
        brightness as seen from the ground, so not dimmed by `extinction_mag_per_airmass`.
    zero_point_mag : float
        Magnitude that gives 1 electron per second in total, above the atmosphere (airmass 0)
        for a star of colour 0.
    band : str
        Filter band for the catalog magnitudes (see `obsctl.simulators.sky.StarCatalog.mag`).
    catalog_seed : int
        Seed of the synthetic catalog.
    density_per_deg2 : float
        Star density between the magnitude limits (stars per square degree).
    mag_bright, mag_limit : float
        Magnitude range of the synthetic catalog (mag, V).
    flat_panel_e_s : float or None, optional
        When set, the telescope sees a uniform flat lamp of this level (electrons per second
        per unbinned pixel) instead of sky and stars.
    variables : tuple of VariableStar, optional
        Variable stars and transients added to the catalog (see `obsctl.simulators.variables`).
    time_mjd : float or None, optional
        Middle of the exposure (MJD, UTC), where the variables are evaluated.
    airmass : float, optional
        Airmass of the pointing at the middle of the exposure (dimensionless), > 0.
    extinction_mag_per_airmass : float, optional
        Extinction in the band (mag per airmass), >= 0; 0 (the default) is no atmosphere.
    colour_term : float, optional
        Colour term of the band (mag per mag of the catalog colour
        `obsctl.simulators.atmosphere.COLOUR_INDEX` of `band`).
    seeing_airmass_exponent : float, optional
        The seeing grows as ``airmass**seeing_airmass_exponent``, >= 0; 0 keeps it constant.
    transmission : float, optional
        Grey transmission of clouds during the exposure, in [0, 1], applied to stars and sky.
    galaxy_density_r21_per_deg2 : float, optional
        Galaxies per square degree brighter than R = 21 (`obsctl.simulators.artefacts.
        galaxies`, seeded by `catalog_seed`); 3000 is the real sky, 0 (the default) none.
    galaxy_mag_bright, galaxy_mag_limit : float, optional
        R magnitude range of the galaxies (mag), `galaxy_mag_limit` at most 27.
    satellite_rate_per_hour : float, optional
        Mean number of satellite trails crossing the sensor per hour of exposure, >= 0; 0
        (the default) for none.
    trail_mag_per_arcsec_range : tuple of float, optional
        Range of trail surface brightness (mag per arcsec of trail, above the atmosphere).
    defocus_px : float, optional
        Radius of a defocused star's geometric blur circle (unbinned pixel): the aperture's
        image, ``|focus offset| / (2 * focal ratio)``, which the seeing profile is spread
        over. 0 is in focus. Stars only: galaxies and trails stay sharp.
    obstruction : float, optional
        The central obstruction's diameter over the aperture's (0 to < 1): far from focus a
        star is a ring with a hole of this fraction of its radius (a doughnut).
    transients : tuple of Transient, optional
        Supernovae on galaxies and outbursts of stars (`obsctl.simulators.transients`),
        evaluated at `time_mjd` and left out when it is None.
    asteroids : tuple of Asteroid, optional
        Moving objects, drawn along their track over the exposure, which is taken to span
        ``time_mjd -+ exposure_s / 2``; left out when `time_mjd` is None.

    Notes
    -----
    The defaults of the atmosphere's five fields describe no atmosphere at all, and those of
    the galaxies and satellites none of them, so a scene built by hand renders
    ``10**(-0.4 * (mag - zero_point_mag))`` electrons per second per star and nothing else;
    `obsctl.simulators.camera_model.sky_scene` fills them from `SimulatedSkyConfig`.
    """

    ra_deg: float
    dec_deg: float
    rotation_deg: float
    pixel_scale_arcsec: float
    seeing_arcsec: float
    moffat_beta: float
    sky_e_s_px: float
    zero_point_mag: float
    band: str
    catalog_seed: int
    density_per_deg2: float
    mag_bright: float
    mag_limit: float
    flat_panel_e_s: float | None = None
    variables: tuple[VariableStar, ...] = ()
    time_mjd: float | None = None
    airmass: float = 1.0
    extinction_mag_per_airmass: float = 0.0
    colour_term: float = 0.0
    seeing_airmass_exponent: float = 0.0
    transmission: float = 1.0
    galaxy_density_r21_per_deg2: float = 0.0
    galaxy_mag_bright: float = 12.0
    galaxy_mag_limit: float = 21.0
    satellite_rate_per_hour: float = 0.0
    trail_mag_per_arcsec_range: tuple[float, float] = (13.0, 17.0)
    defocus_px: float = 0.0
    obstruction: float = 0.0
    transients: tuple[Transient, ...] = ()
    asteroids: tuple[Asteroid, ...] = ()

    def __post_init__(self) -> None:
        if self.pixel_scale_arcsec <= 0.0 or self.seeing_arcsec <= 0.0:
            raise ValueError("pixel_scale_arcsec and seeing_arcsec must be positive")
        if self.airmass <= 0.0 or self.extinction_mag_per_airmass < 0.0:
            raise ValueError("airmass must be positive and extinction_mag_per_airmass >= 0")
        if self.seeing_airmass_exponent < 0.0 or not 0.0 <= self.transmission <= 1.0:
            raise ValueError("need seeing_airmass_exponent >= 0 and transmission within [0, 1]")
        if self.moffat_beta <= 1.0:
            raise ValueError("moffat_beta must be > 1 for the profile to have finite flux")
        if self.sky_e_s_px < 0.0 or (self.flat_panel_e_s is not None and self.flat_panel_e_s < 0):
            raise ValueError("sky_e_s_px and flat_panel_e_s must be >= 0")
        if self.band.strip().upper() not in BANDS:
            raise ValueError(f"unknown band {self.band!r}; expected one of {', '.join(BANDS)}")
        if self.galaxy_density_r21_per_deg2 < 0.0 or self.satellite_rate_per_hour < 0.0:
            raise ValueError("galaxy_density_r21_per_deg2 and satellite_rate_per_hour must be >= 0")
        if not self.galaxy_mag_bright < self.galaxy_mag_limit <= 27.0:
            raise ValueError("need galaxy_mag_bright < galaxy_mag_limit <= 27")
        low, high = self.trail_mag_per_arcsec_range
        if not low <= high:
            raise ValueError("trail_mag_per_arcsec_range must be (low, high) with low <= high")
        if not (self.defocus_px >= 0.0 and 0.0 <= self.obstruction < 1.0):
            raise ValueError("need defocus_px >= 0 and obstruction within [0, 1)")


@dataclass(frozen=True, eq=False)
class RenderResult:
    """One rendered exposure and its ground truth.

    Parameters
    ----------
    image : numpy.ndarray
        Raw frame (ADU), shape ``(num_y, num_x)``, C-contiguous, native byte order; uint16 when
        ``max_adu <= 65535``, else int32.
    stars : numpy.ndarray of STAR_TRUTH_DTYPE
        Stars whose centres fall inside the image: ``x``, ``y`` are zero-based coordinates in
        the returned (binned, subframed) image with pixel centres at integers; ``flux_e`` is
        the total expected electrons from the star before the flat field.
    cosmic_count : int
        Number of cosmic-ray hits deposited in the read area.
    hot_pixels : numpy.ndarray of int64
        ``(N, 2)`` unbinned ``(y, x)`` sensor coordinates (zero-based, full-sensor origin) of
        the hot pixels inside the read area. Output pixel: ``((y - start_y * bin_y) // bin_y,
        (x - start_x * bin_x) // bin_x)``.
    sky : SkyConditions or None
        What the atmosphere did to a sky exposure; None for darks, biases and flat lamps.
    galaxies : numpy.ndarray of GALAXY_TRUTH_DTYPE
        Galaxies whose centres fall inside the image, ``x``, ``y`` as for `stars`;
        ``flux_e`` the total expected electrons (extinction, the galaxy's colour term and the
        clouds applied, before the flat field and any colour filter).
    trail : SatelliteTrail or None
        The satellite trail crossing the sensor in this exposure, in unbinned full-sensor
        coordinates (zero-based; the output pixel as for `hot_pixels`), or None.
    saturated_px : int
        Unbinned pixels of the read area whose expected charge (photo-electrons and mean dark
        current) reached the full well, after bleeding on a sensor that bleeds.
    bad_columns : numpy.ndarray of BAD_COLUMN_DTYPE
        The sensor's bad columns inside the read area, in full-sensor coordinates (``x``
        unbinned; output column ``(x - start_x * bin_x) // bin_x``).
    transients : numpy.ndarray of TRANSIENT_TRUTH_DTYPE
        The scene's transients centred in the image, visible or not (``mag`` inf), at the
        exposure's middle; ``x``, ``y`` as for `stars`.
    asteroids : numpy.ndarray of ASTEROID_TRUTH_DTYPE
        The scene's asteroids whose track over the exposure crosses the image, with their
        positions at its start, middle and end.
    """

    image: NDArray[np.integer[Any]]
    stars: NDArray[np.void]
    cosmic_count: int
    hot_pixels: NDArray[np.int64]
    sky: SkyConditions | None = None
    galaxies: NDArray[np.void] = field(default_factory=lambda: np.empty(0, GALAXY_TRUTH_DTYPE))
    trail: SatelliteTrail | None = None
    saturated_px: int = 0
    bad_columns: NDArray[np.void] = field(default_factory=lambda: np.empty(0, BAD_COLUMN_DTYPE))
    transients: NDArray[np.void] = field(default_factory=lambda: np.empty(0, TRANSIENT_TRUTH_DTYPE))
    asteroids: NDArray[np.void] = field(default_factory=lambda: np.empty(0, ASTEROID_TRUTH_DTYPE))


@dataclass(frozen=True)
class SkyConditions:
    """The photometric conditions a sky exposure was rendered under (its per-frame truth).

    A star's electrons are ``exposure_s * transmission * 10**(-0.4 * (mag + colour_term *
    colour + extinction_mag - zero_point_mag))`` (see `STAR_TRUTH_DTYPE`).

    Parameters
    ----------
    band : str
        Filter band of the catalog magnitudes (upper case).
    airmass : float
        Airmass at the middle of the exposure (dimensionless).
    extinction_mag_per_airmass : float
        Extinction coefficient used (mag per airmass).
    extinction_mag : float
        Extinction applied to every star (mag), ``extinction_mag_per_airmass * airmass``.
    colour_term : float
        Colour term used (mag per mag of colour).
    transmission : float
        Grey cloud transmission applied to stars and sky, in [0, 1].
    zero_point_mag : float
        Zero point above the atmosphere (mag giving 1 e-/s for a star of colour 0).
    seeing_arcsec : float
        FWHM of the rendered stellar profile (arcsec), after the airmass.
    sky_e_s_px : float
        Sky background rendered (electrons per second per unbinned pixel), after the clouds.
    """

    band: str
    airmass: float
    extinction_mag_per_airmass: float
    extinction_mag: float
    colour_term: float
    transmission: float
    zero_point_mag: float
    seeing_arcsec: float
    sky_e_s_px: float

    @property
    def effective_zero_point_mag(self) -> float:
        """Zero point a frame measures for colour-0 stars (mag giving 1 e-/s on the ground)."""
        return (
            self.zero_point_mag
            - self.extinction_mag
            + 2.5 * math.log10(max(self.transmission, 1e-300))
        )


@dataclass(frozen=True)
class _ReadArea:
    """The unbinned sensor region an exposure reads."""

    x0: int
    y0: int
    width: int
    height: int


def _read_area(sensor: SensorModel, exposure: ExposureSpec) -> _ReadArea:
    area = _ReadArea(
        x0=exposure.start_x * exposure.bin_x,
        y0=exposure.start_y * exposure.bin_y,
        width=exposure.num_x * exposure.bin_x,
        height=exposure.num_y * exposure.bin_y,
    )
    if area.x0 + area.width > sensor.width_px or area.y0 + area.height > sensor.height_px:
        raise ValueError(
            f"subframe {exposure.num_x}x{exposure.num_y} at ({exposure.start_x}, "
            f"{exposure.start_y}) binned {exposure.bin_x}x{exposure.bin_y} exceeds the "
            f"{sensor.width_px}x{sensor.height_px} sensor"
        )
    return area


# --------------------------------------------------------------------------- stellar profile


def _moffat_alpha(fwhm_px: float, beta: float) -> float:
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def stamp_radius_px(fwhm_px: float, beta: float) -> int:
    """Return the half-size of the square stamp a star is drawn in.

    At least 4 FWHM, widened for heavy wings until at most 1 % of the flux falls outside,
    but never beyond 8 FWHM.

    Parameters
    ----------
    fwhm_px : float
        Profile FWHM (pixel).
    beta : float
        Moffat beta, > 1.

    Returns
    -------
    int
        Stamp radius (pixel); the stamp is ``2 * radius + 1`` pixels square.
    """
    alpha = _moffat_alpha(fwhm_px, beta)
    # Flux outside radius r of a Moffat profile is (1 + r^2/alpha^2)^(1 - beta).
    r_wings = alpha * math.sqrt(_STAMP_LOST_FLUX ** (1.0 / (1.0 - beta)) - 1.0)
    radius = min(max(4.0 * fwhm_px, r_wings), _MAX_STAMP_RADIUS_FWHM * fwhm_px)
    return max(_MIN_STAMP_RADIUS_PX, math.ceil(radius))


def moffat_stamp(
    dx: float,
    dy: float,
    *,
    fwhm_px: float,
    beta: float,
    radius_px: int,
    oversample: int,
) -> NDArray[np.float64]:
    """Return a pixel-integrated Moffat profile of unit total flux.

    The stamp is ``2 * radius_px + 1`` pixels square; its centre pixel is at index
    ``(radius_px, radius_px)`` and the star sits at ``(radius_px + dy, radius_px + dx)``.
    Each pixel is the mean of ``oversample**2`` evaluations on a regular sub-pixel grid,
    so undersampled profiles keep the right pixel values and centroid.

    Parameters
    ----------
    dx, dy : float
        Offset of the star from the centre pixel (pixel), normally within [-0.5, 0.5].
    fwhm_px : float
        Profile FWHM (pixel).
    beta : float
        Moffat beta, > 1.
    radius_px : int
        Stamp half-size (pixel).
    oversample : int
        Sub-pixel samples per pixel along each axis, >= 1.

    Returns
    -------
    numpy.ndarray of float64
        Fraction of the star's flux landing in each pixel, shape ``(2r + 1, 2r + 1)``, indexed
        ``[y, x]``. It sums to the fraction of the profile inside the stamp (analytic
        normalisation, not renormalised to 1).
    """
    if beta <= 1.0 or fwhm_px <= 0.0 or radius_px < 0 or oversample < 1:
        raise ValueError("need beta > 1, fwhm_px > 0, radius_px >= 0 and oversample >= 1")
    alpha = _moffat_alpha(fwhm_px, beta)
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    grid = (np.arange(-radius_px, radius_px + 1)[:, None] + sub[None, :]).ravel()
    u2 = ((grid - dx) / alpha) ** 2
    v2 = ((grid - dy) / alpha) ** 2
    profile = (beta - 1.0) / (math.pi * alpha**2) * (1.0 + v2[:, None] + u2[None, :]) ** (-beta)
    size = 2 * radius_px + 1
    pixels: NDArray[np.float64] = profile.reshape(size, oversample, size, oversample).mean(
        axis=(1, 3)
    )
    return pixels


def blur_radius_px(defocus_px: float) -> int:
    """Return how far (pixel) the blur circle widens a star's stamp: 0 in focus."""
    return 0 if defocus_px < _MIN_DEFOCUS_PX else math.ceil(defocus_px + 0.5)


@lru_cache(maxsize=8)
def _pupil_kernel(defocus_px: float, obstruction: float) -> NDArray[np.float64]:
    """Return the defocused pupil's image, pixel-integrated and summing to 1.

    A uniform disc of radius `defocus_px` less the central obstruction's disc, averaged over
    16 x 16 samples a pixel.
    """
    radius = blur_radius_px(defocus_px)
    n = 16
    sub = (np.arange(n) + 0.5) / n - 0.5
    grid = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel()
    r = np.hypot(grid[:, None], grid[None, :])
    inside = (r <= defocus_px) & (r >= obstruction * defocus_px)
    size = 2 * radius + 1
    kernel = inside.reshape(size, n, size, n).mean(axis=(1, 3))
    return np.asarray(kernel / kernel.sum(), dtype=np.float64)


def _star_stamp(
    dx: float, dy: float, fwhm_px: float, beta: float, defocus_px: float = 0.0,
    obstruction: float = 0.0,
) -> NDArray[np.float64]:  # fmt: skip
    """One star's exact stamp, `stamp_radius_px` plus `blur_radius_px` in size.

    Sampled finely enough (3-25 sub-pixels per axis) that undersampled stars keep their
    pixel values; out of focus, the seeing profile is spread over the pupil's image (the
    convolution of two pixel-integrated images, good to a fraction of a pixel's width).
    """
    oversample = min(25, max(3, math.ceil(10.0 / fwhm_px)))
    radius = stamp_radius_px(fwhm_px, beta)
    stamp = moffat_stamp(
        dx, dy, fwhm_px=fwhm_px, beta=beta, radius_px=radius, oversample=oversample
    )
    if blur_radius_px(defocus_px) == 0:
        return stamp
    return np.asarray(fftconvolve(stamp, _pupil_kernel(defocus_px, obstruction)), np.float64)


@lru_cache(maxsize=8)
def _psf_table(
    fwhm_px: float, beta: float, defocus_px: float = 0.0, obstruction: float = 0.0
) -> NDArray[np.float32]:
    """Stamps for a grid of sub-pixel phases, interpolated bilinearly per star.

    Building one oversampled stamp per star would dominate a full-frame render; stamps at
    1/16-pixel phases interpolate to well under 0.01 pixel of centroid error.
    """
    radius = stamp_radius_px(fwhm_px, beta) + blur_radius_px(defocus_px)
    phases = np.arange(_PSF_TABLE_STEPS + 1) / _PSF_TABLE_STEPS - 0.5
    size = 2 * radius + 1
    table = np.empty((phases.size, phases.size, size, size), dtype=np.float32)
    for iy, dy in enumerate(phases):
        for ix, dx in enumerate(phases):
            table[iy, ix] = _star_stamp(
                float(dx), float(dy), fwhm_px, beta, defocus_px, obstruction
            )
    table.flags.writeable = False
    return table


def add_stars(
    image: NDArray[np.float32],
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    flux_e: NDArray[np.float64],
    *,
    fwhm_px: float,
    beta: float,
    defocus_px: float = 0.0,
    obstruction: float = 0.0,
) -> None:
    """Add Moffat stars to an image in place, defocused if asked.

    Parameters
    ----------
    image : numpy.ndarray of float32
        C-contiguous image (electrons), modified in place. Parts of stamps falling outside it
        are dropped.
    x, y : numpy.ndarray of float64
        Star centres in zero-based pixel coordinates of `image` (pixel centres at integers).
    flux_e : numpy.ndarray of float64
        Total flux of each star (electrons).
    fwhm_px : float
        Profile FWHM (pixel).
    beta : float
        Moffat beta, > 1.
    defocus_px, obstruction : float, optional
        The blur circle's radius (pixel) and the central obstruction (see `SkyScene`).
    """
    if image.dtype != np.float32 or not image.flags.c_contiguous or image.ndim != 2:
        raise ValueError("image must be a two-dimensional C-contiguous float32 array")
    if x.size == 0:
        return
    cx = np.floor(x + 0.5).astype(np.int64)
    cy = np.floor(y + 0.5).astype(np.int64)
    if x.size <= _DIRECT_STARS:
        stamps = np.stack(
            [
                _star_stamp(float(dx), float(dy), fwhm_px, beta, defocus_px, obstruction)
                for dx, dy in zip(x - cx, y - cy, strict=True)
            ]
        ).astype(np.float32)
        stamps *= flux_e.astype(np.float32)[:, None, None]
        _add_stamps(image, stamps, cx, cy)
        return

    table = _psf_table(float(fwhm_px), float(beta), float(defocus_px), float(obstruction))
    steps = _PSF_TABLE_STEPS
    tx = (x - cx + 0.5) * steps
    ty = (y - cy + 0.5) * steps
    ix = np.clip(np.floor(tx).astype(np.intp), 0, steps - 1)
    iy = np.clip(np.floor(ty).astype(np.intp), 0, steps - 1)
    wx = (tx - ix).astype(np.float32)[:, None, None]
    wy = (ty - iy).astype(np.float32)[:, None, None]

    for start in range(0, x.size, _STAR_CHUNK):
        s = slice(start, start + _STAR_CHUNK)
        a, b, fx, fy = iy[s], ix[s], wx[s], wy[s]
        stamps = (table[a, b] * (1 - fx) + table[a, b + 1] * fx) * (1 - fy)
        stamps += (table[a + 1, b] * (1 - fx) + table[a + 1, b + 1] * fx) * fy
        stamps *= flux_e[s].astype(np.float32)[:, None, None]
        _add_stamps(image, stamps, cx[s], cy[s])


def _add_stamps(
    image: NDArray[np.float32],
    stamps: NDArray[np.float32],
    cx: NDArray[np.int64],
    cy: NDArray[np.int64],
) -> None:
    """Add square stamps centred on pixels (cx, cy) to `image`, dropping what falls outside."""
    height, width = image.shape
    radius = stamps.shape[1] // 2
    offsets = np.arange(-radius, radius + 1)
    rows = cy[:, None, None] + offsets[None, :, None]
    cols = cx[:, None, None] + offsets[None, None, :]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = rows * width + cols
    # add.at, not fancy +=, because neighbouring stars' stamps overlap.
    np.add.at(image.reshape(-1), index[inside], stamps[inside])


# ------------------------------------------------------------------------ fixed patterns


def _rng(*entropy: int) -> np.random.Generator:
    return np.random.default_rng(list(entropy))


@lru_cache(maxsize=2)
def _flat_region(
    width_px: int, height_px: int, seed: int, x0: int, y0: int, width: int, height: int
) -> NDArray[np.float32]:
    rng = _rng(seed, _STREAM_FLAT)
    diag = math.hypot(width_px, height_px)
    # Optical axis slightly off the sensor centre, as in any real train.
    axis_x = (width_px - 1) / 2.0 + rng.uniform(-0.03, 0.03) * width_px
    axis_y = (height_px - 1) / 2.0 + rng.uniform(-0.03, 0.03) * height_px
    corner_loss = rng.uniform(0.10, 0.20)
    prnu_sigma = rng.uniform(0.005, 0.01)

    xs = np.arange(x0, x0 + width, dtype=np.float32)
    ys = np.arange(y0, y0 + height, dtype=np.float32)
    half_diag = np.float32(diag / 2.0)
    rho2_x = ((xs - np.float32(axis_x)) / half_diag) ** 2
    rho2_y = ((ys - np.float32(axis_y)) / half_diag) ** 2
    # cos^4-like fall-off (1 + k rho^2)^-2, with k set so a corner loses `corner_loss`.
    k = np.float32((1.0 - corner_loss) ** -0.5 - 1.0)
    flat = rho2_y[:, None] + rho2_x[None, :]
    flat *= k
    flat += np.float32(1.0)
    np.square(flat, out=flat)
    np.reciprocal(flat, out=flat)

    _apply_dust(flat, rng, width_px=width_px, height_px=height_px, x0=x0, y0=y0)
    _apply_prnu(flat, seed, prnu_sigma, width_px=width_px, x0=x0, y0=y0)
    flat.flags.writeable = False
    return flat


def _apply_dust(
    flat: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    width_px: int,
    height_px: int,
    x0: int,
    y0: int,
) -> None:
    """Multiply in the out-of-focus shadows of dust on the filter or sensor window."""
    diag = math.hypot(width_px, height_px)
    height, width = flat.shape
    n_donuts = int(rng.integers(3, 7))
    for _ in range(n_donuts):
        cx = rng.uniform(0, width_px)
        cy = rng.uniform(0, height_px)
        outer = max(6.0, 0.003 * diag) * rng.uniform(0.8, 1.4)
        depth = rng.uniform(0.02, 0.04)
        reach = math.ceil(1.4 * outer)
        bx0 = max(x0, math.floor(cx) - reach) - x0
        bx1 = min(x0 + width, math.floor(cx) + reach + 1) - x0
        by0 = max(y0, math.floor(cy) - reach) - y0
        by1 = min(y0 + height, math.floor(cy) + reach + 1) - y0
        if bx0 >= bx1 or by0 >= by1:
            continue
        dx = np.arange(bx0 + x0, bx1 + x0) - cx
        dy = np.arange(by0 + y0, by1 + y0) - cy
        r = np.hypot(dy[:, None], dx[None, :])
        # A ring (the shadow of the secondary mirror's annulus), darkest at 0.72 of its radius.
        ring = depth * np.exp(-(((r - 0.72 * outer) / (0.15 * outer)) ** 2))
        flat[by0:by1, bx0:bx1] *= (1.0 - ring).astype(np.float32)


def _apply_prnu(
    flat: NDArray[np.float32], seed: int, sigma: float, *, width_px: int, x0: int, y0: int
) -> None:
    """Multiply in pixel response non-uniformity, the same per pixel for any subframe."""
    height, width = flat.shape
    first = y0 // _PRNU_BLOCK_ROWS
    last = (y0 + height - 1) // _PRNU_BLOCK_ROWS
    for block in range(first, last + 1):
        rng = _rng(seed, _STREAM_PRNU, block)
        block_y0 = block * _PRNU_BLOCK_ROWS
        # Always draw whole-width full blocks so the values do not depend on the subframe.
        noise = rng.standard_normal((_PRNU_BLOCK_ROWS, width_px), dtype=np.float32)
        r0 = max(y0, block_y0)
        r1 = min(y0 + height, block_y0 + _PRNU_BLOCK_ROWS)
        part = noise[r0 - block_y0 : r1 - block_y0, x0 : x0 + width]
        part *= np.float32(sigma)
        part += np.float32(1.0)
        flat[r0 - y0 : r1 - y0] *= part


def flat_response(
    sensor: SensorModel, *, x0: int, y0: int, width: int, height: int
) -> NDArray[np.float32]:
    """Return the flat-field response of part of the sensor.

    Vignetting (a smooth radial fall-off of 10-20 % to the corners around a slightly
    off-centre optical axis), 3-6 dust donuts 2-4 % deep whose size scales with the sensor,
    and 0.5-1 % pixel response non-uniformity. It depends only on the sensor's size and seed,
    and a pixel has the same response whichever region is asked for. Recent regions are
    cached.

    Parameters
    ----------
    sensor : SensorModel
        The sensor.
    x0, y0 : int
        Zero-based unbinned origin of the region (pixel).
    width, height : int
        Region size (unbinned pixels).

    Returns
    -------
    numpy.ndarray of float32
        Read-only relative response (1 at the optical axis, before dust and PRNU), shape
        ``(height, width)``.

    Raises
    ------
    ValueError
        If the region is empty or not on the sensor.
    """
    if x0 < 0 or y0 < 0 or width < 1 or height < 1:
        raise ValueError("region must have a non-negative origin and a positive size")
    if x0 + width > sensor.width_px or y0 + height > sensor.height_px:
        raise ValueError("region exceeds the sensor")
    return _flat_region(sensor.width_px, sensor.height_px, sensor.seed, x0, y0, width, height)


@lru_cache(maxsize=4)
def _hot_pixels(
    width_px: int, height_px: int, seed: int, fraction: float
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    rng = _rng(seed, _STREAM_HOT)
    n_pixels = width_px * height_px
    count = round(fraction * n_pixels)
    flat_index = np.sort(rng.choice(n_pixels, size=count, replace=False))
    positions = np.stack(np.divmod(flat_index, width_px), axis=1).astype(np.int64)
    # Log-uniform: most hot pixels are warm, a few are very hot.
    factors = np.exp(rng.uniform(math.log(50.0), math.log(500.0), count)).astype(np.float32)
    positions.flags.writeable = False
    factors.flags.writeable = False
    return positions, factors


def hot_pixel_map(sensor: SensorModel) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Return the sensor's fixed hot pixels.

    Parameters
    ----------
    sensor : SensorModel
        The sensor; the set depends on its size, seed and ``hot_pixel_fraction``.

    Returns
    -------
    positions : numpy.ndarray of int64
        Read-only ``(N, 2)`` zero-based unbinned ``(y, x)`` sensor coordinates, sorted by
        row then column.
    factors : numpy.ndarray of float32
        Read-only dark current of each hot pixel in units of the normal dark current,
        50-500.
    """
    return _hot_pixels(sensor.width_px, sensor.height_px, sensor.seed, sensor.hot_pixel_fraction)


@lru_cache(maxsize=4)
def _column_bias(width_px: int, seed: int) -> NDArray[np.float32]:
    offsets = _rng(seed, _STREAM_COLUMNS).normal(0.0, _COLUMN_BIAS_SIGMA_ADU, width_px)
    result = offsets.astype(np.float32)
    result.flags.writeable = False
    return result


def column_bias(sensor: SensorModel) -> NDArray[np.float32]:
    """Return the fixed per-column bias offsets of the sensor.

    Parameters
    ----------
    sensor : SensorModel
        The sensor; the offsets depend on its width and seed.

    Returns
    -------
    numpy.ndarray of float32
        Read-only offset of each unbinned column (ADU), zero-mean, a few ADU RMS, added on
        top of the bias level. A binned column gets the mean of its unbinned columns.
    """
    return _column_bias(sensor.width_px, sensor.seed)


def dark_current_e_s(sensor: SensorModel, temperature_c: float) -> float:
    """Return the mean dark current at a sensor temperature.

    Parameters
    ----------
    sensor : SensorModel
        The sensor.
    temperature_c : float
        Sensor temperature (degC).

    Returns
    -------
    float
        Dark current (electrons per second per unbinned pixel), doubling every
        ``dark_doubling_c`` degrees above -10 degC.
    """
    doublings = (temperature_c - _DARK_REFERENCE_C) / sensor.dark_doubling_c
    return float(sensor.dark_current_e_s * math.pow(2.0, doublings))


# ------------------------------------------------------------------------- charge handling


def add_cosmic_rays(
    electrons: NDArray[np.float32],
    rng: np.random.Generator,
    *,
    count: int,
    bin_x: int = 1,
    bin_y: int = 1,
) -> None:
    """Deposit cosmic-ray hits into a (possibly binned) charge image, in place.

    Half the hits are single pixels and half straight tracks 2-15 unbinned pixels long in a
    random direction; each deposits 500-20000 electrons (log-uniform) shared along its track.
    Hits are placed on the unbinned grid under the image and summed into binned pixels.

    Parameters
    ----------
    electrons : numpy.ndarray of float32
        Charge image (electrons), shape ``(ny, nx)`` covering ``ny * bin_y`` by
        ``nx * bin_x`` unbinned pixels; modified in place.
    rng : numpy.random.Generator
        Source of randomness.
    count : int
        Number of hits.
    bin_x, bin_y : int, optional
        Binning of `electrons`.
    """
    if count <= 0:
        return
    ny, nx = electrons.shape
    height, width = ny * bin_y, nx * bin_x
    y0 = rng.uniform(0, height, count)
    x0 = rng.uniform(0, width, count)
    length = np.where(rng.random(count) < 0.5, rng.uniform(2.0, 15.0, count), 0.0)
    angle = rng.uniform(0.0, math.pi, count)
    energy = np.exp(rng.uniform(math.log(500.0), math.log(20000.0), count))

    all_y: list[NDArray[np.int64]] = []
    all_x: list[NDArray[np.int64]] = []
    all_e: list[NDArray[np.float64]] = []
    for i in range(count):
        t = np.linspace(-0.5, 0.5, 2 * math.ceil(length[i]) + 1) * length[i]
        py = np.floor(y0[i] + t * math.sin(angle[i])).astype(np.int64)
        px = np.floor(x0[i] + t * math.cos(angle[i])).astype(np.int64)
        # Sampling at half-pixel steps visits most pixels twice; keep each once, in order.
        _, first = np.unique(py * (width + 32) + px, return_index=True)
        keep = np.sort(first)
        py, px = py[keep], px[keep]
        share = rng.uniform(0.7, 1.3, py.size)
        all_y.append(py)
        all_x.append(px)
        all_e.append(energy[i] * share / share.sum())
    ys = np.concatenate(all_y)
    xs = np.concatenate(all_x)
    es = np.concatenate(all_e)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    np.add.at(electrons, (ys[inside] // bin_y, xs[inside] // bin_x), es[inside].astype(np.float32))


def bin_charge(electrons: NDArray[np.float32], bin_x: int, bin_y: int) -> NDArray[np.float32]:
    """Sum the charge of ``bin_x`` by ``bin_y`` pixel blocks.

    Parameters
    ----------
    electrons : numpy.ndarray of float32
        Unbinned charge (electrons); both dimensions must be multiples of the bin factors.
    bin_x, bin_y : int
        Binning factors.

    Returns
    -------
    numpy.ndarray of float32
        Binned charge (electrons), shape ``(ny // bin_y, nx // bin_x)``; the input itself when
        both factors are 1.
    """
    ny, nx = electrons.shape
    if ny % bin_y or nx % bin_x:
        raise ValueError(f"shape {electrons.shape} is not a multiple of the {bin_x}x{bin_y} bin")
    if bin_x == 1 and bin_y == 1:
        return electrons
    binned: NDArray[np.float32] = electrons.reshape(ny // bin_y, bin_y, nx // bin_x, bin_x).sum(
        axis=(1, 3), dtype=np.float32
    )
    return binned


@lru_cache(maxsize=1)
def _poisson_tables() -> tuple[NDArray[np.float32], NDArray[np.int32]]:
    """Poisson CDFs on a grid of means, and a guide table into each (Chen & Asau 1974)."""
    n_levels = round(_POISSON_BELOW_E * _POISSON_LEVELS_PER_E) + 2
    mean = np.arange(n_levels, dtype=np.float64) / _POISSON_LEVELS_PER_E
    k = np.arange(1, _POISSON_MAX_COUNT + 1, dtype=np.float64)
    ratios = np.concatenate([np.ones((n_levels, 1)), mean[:, None] / k[None, :]], axis=1)
    pmf = np.exp(-mean)[:, None] * np.cumprod(ratios, axis=1)
    cdf = np.cumsum(pmf, axis=1)
    cdf[:, -1] = 1.0  # truncation: the loop in _poisson_small always stops here
    cdf32 = cdf.astype(np.float32)
    thresholds = np.arange(_POISSON_GUIDE_BUCKETS, dtype=np.float32) / _POISSON_GUIDE_BUCKETS
    guide = (cdf32[:, None, :] < thresholds[None, :, None]).sum(axis=2).astype(np.int32)
    cdf32.flags.writeable = False
    guide.flags.writeable = False
    return cdf32, guide


def _poisson_small(lam: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """Draw Poisson counts for means below `_POISSON_BELOW_E` by table look-up.

    The mean is rounded at random to one of its two neighbouring table levels, with the
    probabilities that keep the expectation exact; the variance grows by at most
    (1/32)^2 / 4 electrons^2, which no measurement can see.
    """
    cdf, guide = _poisson_tables()
    n_counts = cdf.shape[1]
    scaled = lam.ravel() * np.float32(_POISSON_LEVELS_PER_E)
    level = scaled.astype(np.int32)
    scaled -= level
    level += rng.random(scaled.size, dtype=np.float32) < scaled
    u = rng.random(scaled.size, dtype=np.float32)
    bucket = (u * np.float32(_POISSON_GUIDE_BUCKETS)).astype(np.int32)
    bucket += level * _POISSON_GUIDE_BUCKETS
    counts = np.take(guide.ravel(), bucket)
    base = level * n_counts
    flat_cdf = cdf.ravel()
    todo = np.flatnonzero(np.take(flat_cdf, base + counts) < u)
    # The guide lands within a step or two of the answer; walk up the CDF for the rest.
    while todo.size:
        counts[todo] += 1
        todo = todo[np.take(flat_cdf, base[todo] + counts[todo]) < u[todo]]
    return counts.astype(np.float32).reshape(lam.shape)


def _shot_and_read_noise(
    lam: NDArray[np.float32], read_noise_e: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Return charge with shot noise and read noise added to the expected charge `lam`."""
    z = rng.standard_normal(lam.shape, dtype=np.float32)
    rn = np.float32(read_noise_e)
    low = lam < np.float32(_POISSON_BELOW_E)
    n_low = int(np.count_nonzero(low))
    gaussian = None
    if n_low < lam.size:
        gaussian = lam + rn * rn
        np.sqrt(gaussian, out=gaussian)
        gaussian *= z
        gaussian += lam
        if n_low == 0:
            return gaussian
    if not lam.any():
        return rn * z  # a bias: no charge at all, skip the sampler
    # Clipping only bounds the table index for the (discarded) Gaussian-regime pixels.
    counts = _poisson_small(np.minimum(lam, np.float32(_POISSON_BELOW_E - 1e-3)), rng)
    counts += rn * z
    if gaussian is None:
        return counts
    result: NDArray[np.float32] = np.where(low, counts, gaussian)
    return result


def _digitise(
    expected: NDArray[np.float32],
    sensor: SensorModel,
    exposure: ExposureSpec,
    area: _ReadArea,
) -> NDArray[np.integer[Any]]:
    """Add shot and read noise, saturate and convert expected charge to raw ADU."""
    ny, nx = expected.shape
    n_bin = exposure.bin_x * exposure.bin_y
    out_dtype = np.uint16 if sensor.max_adu <= 65535 else np.int32
    image = np.empty((ny, nx), dtype=out_dtype)

    rn = exposure.read_noise_e
    gain = exposure.electrons_per_adu
    columns = column_bias(sensor)[area.x0 : area.x0 + area.width]
    columns = columns.reshape(nx, exposure.bin_x).mean(axis=1, dtype=np.float32)
    level = sensor.bias_adu + exposure.offset * sensor.adu_per_offset
    rows = np.empty((ny, 1), dtype=np.float32)
    _rng(sensor.seed, exposure.seed, _STREAM_ROWS).standard_normal(dtype=np.float32, out=rows)
    rows *= np.float32(_ROW_NOISE_FRACTION * rn / gain)
    rows += np.float32(level)
    full_well = np.float32(sensor.full_well_e * n_bin)
    inv_gain = np.float32(1.0 / gain)

    def digitise_block(block: int) -> None:
        r0 = block * _NOISE_BLOCK_ROWS
        r1 = min(ny, r0 + _NOISE_BLOCK_ROWS)
        lam = expected[r0:r1]
        rng = _rng(sensor.seed, exposure.seed, _STREAM_NOISE, block)
        charge = _shot_and_read_noise(lam, rn, rng)
        np.minimum(charge, full_well, out=charge)
        charge *= inv_gain
        charge += columns[None, :]
        charge += rows[r0:r1]
        np.clip(charge, 0.0, np.float32(sensor.max_adu), out=charge)
        np.rint(charge, out=charge)
        image[r0:r1] = charge

    n_blocks = -(-ny // _NOISE_BLOCK_ROWS)
    if n_blocks == 1:
        digitise_block(0)
    else:
        # numpy releases the GIL in these loops; each block has its own generator, so the
        # result does not depend on which thread runs which block.
        with ThreadPoolExecutor(min(_DIGITISE_THREADS, n_blocks)) as pool:
            list(pool.map(digitise_block, range(n_blocks)))
    return image


# ------------------------------------------------------------------------------ the frame


def scene_wcs(scene: SkyScene, sensor: SensorModel) -> WCS:
    """Return the WCS of the full, unbinned sensor that stars and galaxies are projected with."""
    return field_wcs(
        scene.ra_deg,
        scene.dec_deg,
        width_px=sensor.width_px,
        height_px=sensor.height_px,
        pixel_scale_arcsec=scene.pixel_scale_arcsec,
        rotation_deg=scene.rotation_deg,
    )


def _output_xy(
    x: NDArray[np.float64], y: NDArray[np.float64], exposure: ExposureSpec
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Read-area coordinates to output (binned) pixels, and which are centred in the image."""
    # Binned output pixel j spans unbinned [j * bin - 0.5, (j + 1) * bin - 0.5).
    x_out = (x - (exposure.bin_x - 1) / 2.0) / exposure.bin_x
    y_out = (y - (exposure.bin_y - 1) / 2.0) / exposure.bin_y
    centred = (
        (x_out >= -0.5) & (x_out < exposure.num_x - 0.5) & (y_out >= -0.5)
        & (y_out < exposure.num_y - 0.5)
    )  # fmt: skip
    return x_out, y_out, centred


def _star_truth(
    scene: SkyScene,
    sensor: SensorModel,
    exposure: ExposureSpec,
    area: _ReadArea,
    radius_px: int,
    wcs: WCS,
) -> tuple[NDArray[np.void], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Project the catalog onto the read area.

    Returns the truth table (stars centred in the output image) and the read-area coordinates
    and fluxes of every star whose stamp touches the read area.
    """
    centre_x = area.x0 + (area.width - 1) / 2.0
    centre_y = area.y0 + (area.height - 1) / 2.0
    ra_c, dec_c = wcs.wcs_pix2world(centre_x, centre_y, 0)
    # TAN magnifies every length, so pixel distance times scale bounds the angular distance.
    reach_px = math.hypot(area.width, area.height) / 2.0 + radius_px + 2.0
    catalog = synthetic_catalog(
        float(ra_c),
        float(dec_c),
        min(180.0, reach_px * scene.pixel_scale_arcsec / 3600.0),
        seed=scene.catalog_seed,
        density_per_deg2=scene.density_per_deg2,
        mag_bright=scene.mag_bright,
        mag_limit=scene.mag_limit,
    )
    catalog = add_variable_stars(catalog, scene.variables, scene.time_mjd)
    x_sensor, y_sensor = wcs.wcs_world2pix(catalog.ra_deg, catalog.dec_deg, 0)
    x = np.asarray(x_sensor, dtype=np.float64) - area.x0
    y = np.asarray(y_sensor, dtype=np.float64) - area.y0
    touching = (
        np.isfinite(x)
        & np.isfinite(y)
        & (x > -radius_px - 1)
        & (x < area.width + radius_px)
        & (y > -radius_px - 1)
        & (y < area.height + radius_px)
    )
    catalog = catalog.take(touching)
    x, y = x[touching], y[touching]
    mag = catalog.mag(scene.band)
    colour = colour_index(catalog, scene.band)
    mag_inst = mag + scene.colour_term * colour
    dimming = extinction_mag(scene.extinction_mag_per_airmass, scene.airmass)
    flux_e = (
        10.0 ** (-0.4 * (mag_inst + dimming - scene.zero_point_mag))
        * scene.transmission
        * exposure.exposure_s
    )

    x_out, y_out, centred = _output_xy(x, y, exposure)
    truth = np.empty(int(centred.sum()), dtype=STAR_TRUTH_DTYPE)
    truth["id"] = catalog.id[centred]
    truth["ra_deg"] = catalog.ra_deg[centred]
    truth["dec_deg"] = catalog.dec_deg[centred]
    truth["mag"] = mag[centred]
    truth["x"] = x_out[centred]
    truth["y"] = y_out[centred]
    truth["flux_e"] = flux_e[centred]
    for column, values in catalog.magnitudes().items():
        truth[column] = values[centred]
    truth["colour"] = colour[centred]
    truth["mag_inst"] = mag_inst[centred]
    return truth, x, y, flux_e


@dataclass(frozen=True)
class _GalaxyField:
    """What fixes the galaxy layer of a read area (the cache key of `_galaxy_layer`)."""

    sensor_width_px: int
    sensor_height_px: int
    area: _ReadArea
    ra_deg: float
    dec_deg: float
    rotation_deg: float
    pixel_scale_arcsec: float
    seed: int
    density_r21_per_deg2: float
    mag_bright: float
    mag_limit: float
    band: str
    colour_term: float
    zero_point_mag: float
    fwhm_px: float
    beta: float


@dataclass(frozen=True, eq=False)
class _GalaxyLayer:
    """Galaxies drawn at unit exposure factor: 1 s, no extinction, no clouds."""

    charge: NDArray[np.float32]
    table: NDArray[np.void]  # GALAXY_TRUTH_DTYPE, x/y unbinned read-area pixels


def _galaxy_field(scene: SkyScene, sensor: SensorModel, area: _ReadArea) -> _GalaxyField:
    """Return the galaxy layer's key, with the seeing in 1 % steps and the pointing in mas.

    A tracking mount's RA wobbles in the last bits and the seeing follows the airmass, so
    exact values would never meet again. Galaxies drawn with a seeing within 0.5 % of the
    stars' and 2 mas (under 0.01 pixel) from the exact pointing are indistinguishable.
    """
    steps = round(math.log(_rendered_fwhm_px(scene)) / _GALAXY_FWHM_STEP)
    return _GalaxyField(
        sensor_width_px=sensor.width_px,
        sensor_height_px=sensor.height_px,
        area=area,
        ra_deg=round(scene.ra_deg % 360.0, 6),
        dec_deg=round(scene.dec_deg, 6),
        rotation_deg=round(scene.rotation_deg, 4),
        pixel_scale_arcsec=scene.pixel_scale_arcsec,
        seed=scene.catalog_seed,
        density_r21_per_deg2=scene.galaxy_density_r21_per_deg2,
        mag_bright=scene.galaxy_mag_bright,
        mag_limit=scene.galaxy_mag_limit,
        band=scene.band.strip().upper(),
        colour_term=scene.colour_term,
        zero_point_mag=scene.zero_point_mag,
        fwhm_px=float(f"{math.exp(steps * _GALAXY_FWHM_STEP):.4g}"),
        beta=scene.moffat_beta,
    )


@lru_cache(maxsize=2)  # a full frame and a subframe of it (focus, centring)
def _galaxy_layer(key: _GalaxyField) -> _GalaxyLayer:
    """Draw the galaxies touching a read area, at unit exposure factor (cached).

    The galaxies of one field in one band differ between exposures only by the factor
    ``exposure_s * transmission * 10**(-0.4 * extinction_mag)``; a field observed again and
    again is drawn once.
    """
    area = key.area
    charge = np.zeros((area.height, area.width), dtype=np.float32)
    wcs = field_wcs(
        key.ra_deg,
        key.dec_deg,
        width_px=key.sensor_width_px,
        height_px=key.sensor_height_px,
        pixel_scale_arcsec=key.pixel_scale_arcsec,
        rotation_deg=key.rotation_deg,
    )
    centre_x = area.x0 + (area.width - 1) / 2.0
    centre_y = area.y0 + (area.height - 1) / 2.0
    ra_c, dec_c = (float(v) for v in wcs.wcs_pix2world(centre_x, centre_y, 0))
    psf_radius = stamp_radius_px(key.fwhm_px, key.beta)
    reach_px = math.hypot(area.width, area.height) / 2.0 + _GALAXY_MAX_RADIUS_PX + psf_radius
    catalog = galaxies(
        ra_c,
        dec_c,
        min(180.0, reach_px * key.pixel_scale_arcsec / 3600.0),
        seed=key.seed,
        density_r21_per_deg2=key.density_r21_per_deg2,
        mag_bright=key.mag_bright,
        mag_limit=key.mag_limit,
    )
    x_sensor, y_sensor = wcs.wcs_world2pix(catalog["ra_deg"], catalog["dec_deg"], 0)
    x = np.asarray(x_sensor, dtype=np.float64) - area.x0
    y = np.asarray(y_sensor, dtype=np.float64) - area.y0
    r_eff_px = catalog["r_eff_arcsec"] / key.pixel_scale_arcsec
    reach = (
        galaxy_stamp_radius_px(r_eff_px, catalog["sersic_n"], max_radius_px=_GALAXY_MAX_RADIUS_PX)
        + psf_radius
        + 1
    )
    touching = (
        np.isfinite(x) & np.isfinite(y) & (x > -reach) & (x < area.width + reach)
        & (y > -reach) & (y < area.height + reach)
    )  # fmt: skip
    catalog, x, y, r_eff_px = catalog[touching], x[touching], y[touching], r_eff_px[touching]

    mag = galaxy_mag(catalog, key.band)
    first, second = COLOUR_INDEX[key.band]
    colour = galaxy_mag(catalog, first) - galaxy_mag(catalog, second)
    unit_flux = 10.0 ** (-0.4 * (mag + key.colour_term * colour - key.zero_point_mag))
    # The major axis's sky position angle, turned into the image by the WCS at the centre.
    step_deg = 1.0 / 3600.0
    cos_dec = max(math.cos(math.radians(dec_c)), 1e-6)
    (px0, px_n, px_e), (py0, py_n, py_e) = wcs.wcs_world2pix(
        [ra_c, ra_c, ra_c + step_deg / cos_dec], [dec_c, dec_c + step_deg, dec_c], 0
    )
    pa_image = sky_pa_to_image_deg(
        catalog["pa_deg"],
        north_dx=float(px_n - px0),
        north_dy=float(py_n - py0),
        east_dx=float(px_e - px0),
        east_dy=float(py_e - py0),
    )

    def draw(part: slice, into: NDArray[np.float32]) -> None:
        add_galaxies(
            into,
            x[part],
            y[part],
            unit_flux[part],
            r_eff_px[part],
            catalog["sersic_n"][part],
            catalog["ellipticity"][part],
            pa_image[part],
            fwhm_px=key.fwhm_px,
            beta=key.beta,
            max_radius_px=_GALAXY_MAX_RADIUS_PX,
        )

    if x.size < _GALAXIES_PER_THREAD:
        draw(slice(None), charge)
    else:
        # Sersic sampling and FFTs release the GIL: half the galaxies (every other one, so
        # both halves mix sizes alike) go to a second thread drawing into its own buffer.
        # The sum does not depend on which thread finishes first.
        other = np.zeros_like(charge)
        with ThreadPoolExecutor(1) as pool:
            done = pool.submit(draw, slice(1, None, 2), other)
            draw(slice(0, None, 2), charge)
            done.result()
        charge += other

    table = np.empty(x.size, dtype=GALAXY_TRUTH_DTYPE)
    for column in ("id", "ra_deg", "dec_deg", "sersic_n", "ellipticity"):
        table[column] = catalog[column]
    table["mag"] = mag
    table["x"] = x
    table["y"] = y
    table["r_eff_px"] = r_eff_px
    table["pa_deg"] = pa_image
    table["flux_e"] = unit_flux
    charge.flags.writeable = False
    table.flags.writeable = False
    log.debug("drew %d galaxies of a %dx%d read area", x.size, area.width, area.height)
    return _GalaxyLayer(charge=charge, table=table)


def _add_galaxies(
    charge: NDArray[np.float32],
    scene: SkyScene,
    sensor: SensorModel,
    exposure: ExposureSpec,
    area: _ReadArea,
) -> NDArray[np.void]:
    """Add the scene's galaxies to the unbinned read area; return their truth.

    Galaxies go through the same atmosphere as the stars: extinction, the colour term times
    the galaxy's own catalog colour (`COLOUR_INDEX` of the band; galaxies have B, V, R and
    I), the clouds, and the seeing at the airmass (to 1 %, see `_galaxy_field`).
    """
    if scene.galaxy_density_r21_per_deg2 <= 0.0:
        return np.empty(0, dtype=GALAXY_TRUTH_DTYPE)
    layer = _galaxy_layer(_galaxy_field(scene, sensor, area))
    dimming = extinction_mag(scene.extinction_mag_per_airmass, scene.airmass)
    factor = exposure.exposure_s * scene.transmission * 10.0 ** (-0.4 * dimming)
    if layer.table.size and factor > 0.0:
        charge += layer.charge * np.float32(factor)
    table = layer.table
    x_out, y_out, centred = _output_xy(table["x"], table["y"], exposure)
    truth = table[centred]  # a copy: boolean indexing
    truth["x"] = x_out[centred]
    truth["y"] = y_out[centred]
    truth["flux_e"] *= factor
    return truth


def _add_trail(
    charge: NDArray[np.float32],
    sensor: SensorModel,
    scene: SkyScene,
    exposure: ExposureSpec,
    area: _ReadArea,
    fwhm_px: float,
) -> SatelliteTrail | None:
    """Maybe cross the read area with a satellite trail, placed on the whole sensor.

    Sunlight off the satellite goes through the same air and clouds as the starlight
    (extinction and transmission; no colour term: a colour-0 source).
    """
    if scene.satellite_rate_per_hour <= 0.0:
        return None
    dimming = extinction_mag(scene.extinction_mag_per_airmass, scene.airmass)
    zero_point = scene.zero_point_mag - dimming + 2.5 * math.log10(max(scene.transmission, 1e-300))
    return satellite_trail(
        charge,
        _rng(sensor.seed, exposure.seed, _STREAM_TRAIL),
        rate_per_hour=scene.satellite_rate_per_hour,
        exposure_s=exposure.exposure_s,
        fwhm_px=fwhm_px,
        beta=scene.moffat_beta,
        pixel_scale_arcsec=scene.pixel_scale_arcsec,
        zero_point_mag=zero_point,
        mag_per_arcsec_range=scene.trail_mag_per_arcsec_range,
        sensor_shape=(sensor.height_px, sensor.width_px),
        x0=area.x0,
        y0=area.y0,
    )


@dataclass(frozen=True, eq=False)
class _MovingTruth:
    """Truth of an exposure's transients and asteroids (empty for darks and flats)."""

    transients: NDArray[np.void] = field(default_factory=lambda: np.empty(0, TRANSIENT_TRUTH_DTYPE))
    asteroids: NDArray[np.void] = field(default_factory=lambda: np.empty(0, ASTEROID_TRUTH_DTYPE))


# An asteroid's track is drawn as point images this far apart at most (unbinned pixel): the
# sum of PSFs then matches the PSF convolved with the segment to far below the noise.
_TRACK_STEP_PX = 0.2
_MAX_TRACK_POINTS = 20_000


def _point_flux_e(
    scene: SkyScene, exposure: ExposureSpec, mag: NDArray[np.float64], colour: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Return point sources' expected electrons, as `_star_truth` a star's (0 for mag inf)."""
    dimming = extinction_mag(scene.extinction_mag_per_airmass, scene.airmass)
    with np.errstate(over="ignore"):
        scale = 10.0 ** (-0.4 * (mag + scene.colour_term * colour + dimming - scene.zero_point_mag))
    return np.asarray(scale * scene.transmission * exposure.exposure_s, dtype=np.float64)


def _add_transients(
    charge: NDArray[np.float32],
    scene: SkyScene,
    exposure: ExposureSpec,
    area: _ReadArea,
    wcs: WCS,
    fwhm_px: float,
) -> _MovingTruth:
    """Add the scene's transients and asteroids to the unbinned read area; return their truth.

    They are point sources seen as the stars are (same atmosphere, seeing and focus). An
    asteroid's track over the exposure is drawn as equal point images at the middles of
    equal time steps, at most `_TRACK_STEP_PX` apart.
    """
    if scene.time_mjd is None or not (scene.transients or scene.asteroids):
        return _MovingTruth()
    band = scene.band
    mid = scene.time_mjd

    def read_area_xy(
        ra: NDArray[np.float64], dec: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        xs, ys = wcs.wcs_world2pix(ra, dec, 0)
        return np.asarray(xs, np.float64) - area.x0, np.asarray(ys, np.float64) - area.y0

    reach = stamp_radius_px(fwhm_px, scene.moffat_beta) + blur_radius_px(scene.defocus_px) + 1

    def draw(x: NDArray[np.float64], y: NDArray[np.float64], flux: NDArray[np.float64]) -> None:
        # Only images whose stamp touches the read area: a fast asteroid far off the field
        # would otherwise cost thousands of stamps that all fall outside.
        lit = (
            np.isfinite(x) & np.isfinite(y) & (flux > 0.0) & (x > -reach)
            & (x < area.width + reach) & (y > -reach) & (y < area.height + reach)
        )  # fmt: skip
        add_stars(
            charge, x[lit], y[lit], flux[lit], fwhm_px=fwhm_px, beta=scene.moffat_beta,
            defocus_px=scene.defocus_px, obstruction=scene.obstruction,
        )  # fmt: skip

    transients = np.empty(0, dtype=TRANSIENT_TRUTH_DTYPE)
    if scene.transients:
        ts = scene.transients
        mag = np.array([float(t.mag(band, mid)) for t in ts])
        flux = _point_flux_e(scene, exposure, mag, np.array([t.colour(band) for t in ts]))
        x, y = read_area_xy(np.array([t.ra_deg for t in ts]), np.array([t.dec_deg for t in ts]))
        draw(x, y, flux)
        hx, hy = read_area_xy(
            np.array([t.host_ra_deg for t in ts]), np.array([t.host_dec_deg for t in ts])
        )
        x_out, y_out, centred = _output_xy(x, y, exposure)
        hx_out, hy_out, _ = _output_xy(hx, hy, exposure)
        transients = np.empty(len(ts), dtype=TRANSIENT_TRUTH_DTYPE)
        for i, t in enumerate(ts):
            transients[i] = (
                t.name, t.kind, t.ra_deg, t.dec_deg, x_out[i], y_out[i], mag[i], flux[i],
                float(t.total_mag(band, mid)), t.host_kind, t.host_id, t.host_ra_deg,
                t.host_dec_deg, hx_out[i], hy_out[i], t.offset_arcsec, t.offset_pa_deg,
            )  # fmt: skip
        transients = transients[centred]

    asteroids = np.empty(0, dtype=ASTEROID_TRUTH_DTYPE)
    rows = []
    half_d = 0.5 * exposure.exposure_s / 86400.0
    for a in scene.asteroids:
        ends_ra, ends_dec = a.position([mid - half_d, mid, mid + half_d])
        ex, ey = read_area_xy(ends_ra, ends_dec)
        if not (np.isfinite(ex).all() and np.isfinite(ey).all()):
            continue  # behind the tangent plane: nowhere near this field
        length_px = math.hypot(ex[2] - ex[0], ey[2] - ey[0])
        n = min(_MAX_TRACK_POINTS, max(1, math.ceil(length_px / _TRACK_STEP_PX)))
        times = mid - half_d + (np.arange(n) + 0.5) / n * (2.0 * half_d)
        x, y = read_area_xy(*a.position(times))
        total = float(_point_flux_e(scene, exposure, np.array([a.mag(band)]),
                                    np.array([a.colour(band)]))[0])  # fmt: skip
        draw(x, y, np.full(n, total / n))
        x_out, y_out, centred = _output_xy(x, y, exposure)
        if not centred.any():
            continue
        end_x, end_y, _ = _output_xy(ex, ey, exposure)
        rows.append(
            (
                a.name, a.mag(band), total, a.rate_arcsec_min, a.pa_deg, mid - half_d,
                mid + half_d, ends_ra[0], ends_dec[0], ends_ra[1], ends_dec[1], ends_ra[2],
                ends_dec[2], end_x[0], end_y[0], end_x[1], end_y[1], end_x[2], end_y[2],
                math.hypot(end_x[2] - end_x[0], end_y[2] - end_y[0]),
                length_px >= TRAILED_FWHM_FRACTION * fwhm_px,
            )
        )  # fmt: skip
    if rows:
        asteroids = np.array(rows, dtype=ASTEROID_TRUTH_DTYPE)
    transients.flags.writeable = False
    asteroids.flags.writeable = False
    return _MovingTruth(transients, asteroids)


def _rendered_fwhm_px(scene: SkyScene) -> float:
    """Return the profile FWHM (pixel) at the scene's airmass, to 4 significant digits.

    The seeing changes with every pointing; rounding keeps the PSF tables reusable
    (`_psf_table` is cached per FWHM) at a cost of under 0.05 % in the FWHM.
    """
    seeing = seeing_fwhm_arcsec(scene.seeing_arcsec, scene.airmass, scene.seeing_airmass_exponent)
    return float(f"{seeing / scene.pixel_scale_arcsec:.4g}")


@dataclass(frozen=True, eq=False)
class _Photons:
    """The photo-electrons of one light exposure and their truth."""

    charge: NDArray[np.float32]
    stars: NDArray[np.void]
    galaxies: NDArray[np.void]
    trail: SatelliteTrail | None
    conditions: SkyConditions | None
    transients: NDArray[np.void] = field(default_factory=lambda: np.empty(0, TRANSIENT_TRUTH_DTYPE))
    asteroids: NDArray[np.void] = field(default_factory=lambda: np.empty(0, ASTEROID_TRUTH_DTYPE))


def _photon_charge(
    sensor: SensorModel,
    exposure: ExposureSpec,
    scene: SkyScene,
    area: _ReadArea,
    columns: NDArray[np.void],
) -> _Photons:
    """Return the expected photo-electrons in the unbinned read area, with their truth.

    Stars, galaxies, a satellite trail and the sky (or the flat lamp), times the flat field,
    the light response of the dead `columns` and, on a colour sensor, the colour filters.
    """
    charge = np.zeros((area.height, area.width), dtype=np.float32)
    conditions = None
    galaxy_truth = np.empty(0, dtype=GALAXY_TRUTH_DTYPE)
    trail = None
    moving = _MovingTruth()
    if scene.flat_panel_e_s is not None:
        # The lamp lights the telescope from inside the dome: no air, no clouds.
        charge += np.float32(scene.flat_panel_e_s * exposure.exposure_s)
        truth = np.empty(0, dtype=STAR_TRUTH_DTYPE)
    else:
        fwhm_px = _rendered_fwhm_px(scene)
        radius = stamp_radius_px(fwhm_px, scene.moffat_beta) + blur_radius_px(scene.defocus_px)
        wcs = scene_wcs(scene, sensor)
        truth, x, y, flux_e = _star_truth(scene, sensor, exposure, area, radius, wcs)
        add_stars(
            charge, x, y, flux_e, fwhm_px=fwhm_px, beta=scene.moffat_beta,
            defocus_px=scene.defocus_px, obstruction=scene.obstruction,
        )  # fmt: skip
        galaxy_truth = _add_galaxies(charge, scene, sensor, exposure, area)
        moving = _add_transients(charge, scene, exposure, area, wcs, fwhm_px)
        trail = _add_trail(charge, sensor, scene, exposure, area, fwhm_px)
        # Clouds dim the sky's light as they dim the stars' (grey: no added moonlight glow).
        sky_e_s_px = scene.sky_e_s_px * scene.transmission
        charge += np.float32(sky_e_s_px * exposure.exposure_s)
        conditions = SkyConditions(
            band=scene.band.strip().upper(),
            airmass=scene.airmass,
            extinction_mag_per_airmass=scene.extinction_mag_per_airmass,
            extinction_mag=extinction_mag(scene.extinction_mag_per_airmass, scene.airmass),
            colour_term=scene.colour_term,
            transmission=scene.transmission,
            zero_point_mag=scene.zero_point_mag,
            seeing_arcsec=fwhm_px * scene.pixel_scale_arcsec,
            sky_e_s_px=sky_e_s_px,
        )
        log.debug("rendered %d stars (%d centred in the frame)", x.size, truth.size)
    charge *= flat_response(sensor, x0=area.x0, y0=area.y0, width=area.width, height=area.height)
    dead = columns[columns["kind"] == "dead"]
    if dead.size:
        apply_bad_columns(charge, dead, dark_e=0.0, light=True, x0=area.x0, y0=area.y0)
    if sensor.bayer_pattern is not None:
        charge = bayer_from_mono(
            charge,
            throughput_rgb=sensor.bayer_throughput_rgb,
            pattern=sensor.bayer_pattern,
            x_offset=area.x0,
            y_offset=area.y0,
        )
    return _Photons(
        charge, truth, galaxy_truth, trail, conditions, moving.transients, moving.asteroids
    )


def _saturate(charge: NDArray[np.float32], sensor: SensorModel, dark_e: float) -> int:
    """Bleed (on a sensor that bleeds) the unbinned charge in place; count full pixels.

    The well fills with the dark current as well as the light, so the mean dark charge
    `dark_e` takes its share of the well while the excess spills; it is taken out again
    afterwards, because `render_exposure` adds the dark current (and hot pixels and cosmic
    rays, too sparse to matter here) after binning.
    """
    full_well = np.float32(sensor.full_well_e)
    dark = np.float32(dark_e)
    if not sensor.bleeds:
        return int(np.count_nonzero(charge >= full_well - dark))
    if dark_e == 0.0:
        return bleed(charge, full_well_e=sensor.full_well_e).saturated_px
    charge += dark
    saturated = bleed(charge, full_well_e=sensor.full_well_e).saturated_px
    charge -= dark
    return saturated


def render_exposure(
    sensor: SensorModel, exposure: ExposureSpec, scene: SkyScene | None
) -> RenderResult:
    """Render one raw exposure of the simulated camera.

    Parameters
    ----------
    sensor : SensorModel
        The sensor.
    exposure : ExposureSpec
        Exposure time, shutter, binning, subframe, readout mode, temperature and seed.
    scene : SkyScene or None
        What the telescope sees; None (or ``exposure.light`` False) renders a dark.

    Returns
    -------
    RenderResult
        The raw image with its truth: stars, galaxies, satellite trail, cosmic-ray count,
        hot pixels, saturated pixels and bad columns.

    Raises
    ------
    ValueError
        If the subframe does not fit on the sensor.

    Notes
    -----
    Photo-electrons (Moffat stars with ``FWHM = seeing * airmass**exponent / pixel scale`` and
    fluxes dimmed by extinction, colour terms and clouds; Sersic galaxies convolved with the
    same seeing and dimmed alike; a satellite trail with probability ``1 - exp(-rate * t)``;
    sky dimmed by the clouds; or a flat lamp) are multiplied by `flat_response` and the light
    response of dead columns, and on a colour sensor by the throughput of each pixel's colour
    filter (`obsctl.simulators.artefacts.bayer_from_mono`). On a sensor that bleeds, charge
    above the full well (light plus mean dark current) spills along its column. Charge is
    binned (a colour sensor's binned pixels sum their colours, as the hardware does: the
    frame is no longer a mosaic); dark current (`dark_current_e_s`, hot pixels 50-500 and hot
    columns 5-50 times hotter) and cosmic rays (Poisson with mean ``rate * read area *
    exposure``) are added; shot noise and read noise are added once per binned pixel (exact
    Poisson at low, skewed signal, else a Gaussian of the same variance); charge is clipped
    at ``full_well_e * bin_x * bin_y``, divided by the gain and put on the bias level
    ``bias_adu + offset * adu_per_offset`` with `column_bias` and per-exposure row noise,
    then clipped to ``[0, max_adu]`` and rounded.
    """
    area = _read_area(sensor, exposure)
    t_s = exposure.exposure_s
    n_bin = exposure.bin_x * exposure.bin_y
    dark_e = dark_current_e_s(sensor, exposure.ccd_temperature_c) * t_s
    columns = np.empty(0, dtype=BAD_COLUMN_DTYPE)
    if sensor.dead_columns or sensor.hot_columns:
        all_columns = bad_columns(
            sensor.seed,
            sensor.width_px,
            sensor.height_px,
            dead_count=sensor.dead_columns,
            hot_count=sensor.hot_columns,
            partial_fraction=sensor.partial_column_fraction,
        )
        columns = all_columns[
            (all_columns["x"] >= area.x0) & (all_columns["x"] < area.x0 + area.width)
        ]

    galaxy_truth = np.empty(0, dtype=GALAXY_TRUTH_DTYPE)
    trail = None
    saturated = 0
    moving = _MovingTruth()
    if exposure.light and scene is not None:
        photons = _photon_charge(sensor, exposure, scene, area, columns)
        truth, galaxy_truth, trail, conditions = (
            photons.stars,
            photons.galaxies,
            photons.trail,
            photons.conditions,
        )
        moving = _MovingTruth(photons.transients, photons.asteroids)
        charge = photons.charge
        del photons
        saturated = _saturate(charge, sensor, dark_e)
        expected = bin_charge(charge, exposure.bin_x, exposure.bin_y)
        del charge
        expected += np.float32(dark_e * n_bin)
    else:
        truth = np.empty(0, dtype=STAR_TRUTH_DTYPE)
        conditions = None
        expected = np.full((exposure.num_y, exposure.num_x), dark_e * n_bin, dtype=np.float32)

    positions, factors = hot_pixel_map(sensor)
    hy, hx = positions[:, 0], positions[:, 1]
    in_area = (
        (hy >= area.y0) & (hy < area.y0 + area.height) & (hx >= area.x0)
        & (hx < area.x0 + area.width)
    )  # fmt: skip
    hot = positions[in_area].copy()
    # The pixel's normal dark current is already in `expected`; add the excess.
    np.add.at(
        expected,
        ((hot[:, 0] - area.y0) // exposure.bin_y, (hot[:, 1] - area.x0) // exposure.bin_x),
        (factors[in_area] - np.float32(1.0)) * np.float32(dark_e),
    )
    hot_columns = columns[columns["kind"] == "hot"]
    if hot_columns.size:
        apply_bad_columns(
            expected,
            hot_columns,
            dark_e=dark_e,
            light=False,
            x0=area.x0,
            y0=area.y0,
            bin_x=exposure.bin_x,
            bin_y=exposure.bin_y,
        )

    rng = _rng(sensor.seed, exposure.seed, _STREAM_COSMICS)
    area_cm2 = area.width * area.height * (sensor.pixel_size_um * 1e-4) ** 2
    cosmic_count = int(rng.poisson(sensor.cosmic_rate_cm2_s * area_cm2 * t_s))
    # A deposit is itself a random draw; the shot noise added to it later is immaterial.
    add_cosmic_rays(expected, rng, count=cosmic_count, bin_x=exposure.bin_x, bin_y=exposure.bin_y)

    image = _digitise(expected, sensor, exposure, area)
    log.debug(
        "rendered %dx%d frame (bin %dx%d, %.3f s, light=%s): %d cosmic rays, %d hot pixels, "
        "%d galaxies, trail %s, %d saturated pixels",
        exposure.num_x,
        exposure.num_y,
        exposure.bin_x,
        exposure.bin_y,
        t_s,
        exposure.light and scene is not None,
        cosmic_count,
        hot.shape[0],
        galaxy_truth.size,
        trail is not None,
        saturated,
    )
    columns.flags.writeable = False
    return RenderResult(
        image=image,
        stars=truth,
        cosmic_count=cosmic_count,
        hot_pixels=hot,
        sky=conditions,
        galaxies=galaxy_truth,
        trail=trail,
        saturated_px=saturated,
        bad_columns=columns,
        transients=moving.transients,
        asteroids=moving.asteroids,
    )
