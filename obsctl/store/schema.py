"""The exposure log's schema: its migrations, and the columns the pipeline stores.

Each entry of `MIGRATIONS` migrates the database from version i to i + 1; append, never edit
a released step. `obsctl.store.exposure_log` applies them when it opens a database.
"""

from __future__ import annotations

__all__ = [
    "FRAME_METRIC_COLUMNS",
    "MEASUREMENT_COLUMNS",
    "MIGRATIONS",
    "NIGHT_FIT_COLUMNS",
    "NIGHT_FIT_FRAME_COLUMNS",
]

# Each entry migrates from version i to i + 1. Append; never edit a released step.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE exposures (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        file_path TEXT NOT NULL UNIQUE,
        target TEXT,
        image_type TEXT NOT NULL,
        filter TEXT,
        exposure_s REAL NOT NULL,
        date_obs TEXT NOT NULL,
        mjd_start REAL NOT NULL,
        mjd_mid REAL NOT NULL,
        ra_deg REAL,
        dec_deg REAL,
        alt_deg REAL,
        az_deg REAL,
        airmass REAL,
        bin_x INTEGER NOT NULL,
        bin_y INTEGER NOT NULL,
        gain INTEGER,
        offset INTEGER,
        ccd_temp_c REAL,
        camera TEXT,
        mount TEXT,
        filter_wheel TEXT,
        sequence_id INTEGER,
        step_index INTEGER,
        frame_index INTEGER,
        status TEXT NOT NULL,
        created_utc TEXT NOT NULL
    );
    CREATE INDEX exposures_night ON exposures (night);
    CREATE INDEX exposures_target ON exposures (target, night);
    CREATE INDEX exposures_filter ON exposures (filter, night);
    CREATE INDEX exposures_type ON exposures (image_type, night);
    CREATE INDEX exposures_step ON exposures (sequence_id, step_index);
    CREATE TABLE failures (
        id INTEGER PRIMARY KEY,
        time_utc TEXT NOT NULL,
        night TEXT,
        sequence_id INTEGER,
        step_index INTEGER,
        device TEXT,
        operation TEXT NOT NULL,
        error_type TEXT NOT NULL,
        message TEXT NOT NULL,
        action TEXT NOT NULL
    );
    CREATE INDEX failures_sequence ON failures (sequence_id);
    CREATE TABLE sequences (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        definition TEXT NOT NULL,
        state TEXT NOT NULL,
        created_utc TEXT NOT NULL,
        updated_utc TEXT NOT NULL
    );
    """,
    # 2: the per-frame pipeline: processing queue, frame metrics, source measurements, masters.
    """
    CREATE TABLE processing (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        state TEXT NOT NULL,
        stage TEXT,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        calibrated_path TEXT,
        catalog_path TEXT,
        updated_utc TEXT NOT NULL
    );
    CREATE INDEX processing_state ON processing (state);
    CREATE TABLE frame_metrics (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        fwhm_px REAL,
        fwhm_arcsec REAL,
        hfr_px REAL,
        hfr_arcsec REAL,
        ellipticity REAL,
        star_count INTEGER,
        background REAL,
        background_rms REAL,
        zero_point REAL,
        zero_point_err REAL,
        limiting_mag REAL,
        wcs_rms_arcsec REAL,
        flags TEXT
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        exposure_id INTEGER NOT NULL REFERENCES exposures (id),
        x REAL NOT NULL,
        y REAL NOT NULL,
        ra_deg REAL,
        dec_deg REAL,
        flux REAL,
        flux_err REAL,
        flux_auto REAL,
        flux_auto_err REAL,
        mag REAL,
        mag_err REAL,
        fwhm_px REAL,
        flags INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX measurements_frame ON measurements (exposure_id);
    CREATE INDEX measurements_sky ON measurements (dec_deg, ra_deg);
    CREATE TABLE masters (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        file_path TEXT NOT NULL UNIQUE,
        night TEXT,
        camera TEXT,
        bin_x INTEGER,
        bin_y INTEGER,
        readout_mode TEXT,
        gain INTEGER,
        offset INTEGER,
        ccd_temp_c REAL,
        exposure_s REAL,
        filter TEXT,
        n_frames INTEGER NOT NULL,
        method TEXT NOT NULL,
        created_utc TEXT NOT NULL
    );
    CREATE INDEX masters_kind ON masters (kind, camera, bin_x, filter);
    """,
    # light curves (obsctl.timeseries): objects per field, their points, alerts. Points are
    # clustered by object and time (WITHOUT ROWID) so that one light curve is one range scan.
    """
    CREATE TABLE lc_objects (
        id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        target TEXT,
        ra_deg REAL NOT NULL,
        dec_deg REAL NOT NULL,
        ref_mag REAL,
        first_exposure_id INTEGER,
        first_mjd REAL,
        n_points INTEGER NOT NULL DEFAULT 0,
        comp_weight REAL NOT NULL DEFAULT 0,
        wmean_mag REAL,
        wscatter_mag REAL,
        expected_mag REAL,
        chi2_red REAL,
        stetson_j REAL,
        period_d REAL,
        period_power REAL,
        amplitude_mag REAL,
        updated_utc TEXT
    );
    CREATE INDEX lc_objects_field ON lc_objects (field, dec_deg);
    CREATE UNIQUE INDEX lc_objects_target ON lc_objects (target) WHERE target IS NOT NULL;
    CREATE TABLE lc_points (
        object_id INTEGER NOT NULL,
        mjd REAL NOT NULL,
        exposure_id INTEGER NOT NULL,
        bjd_tdb REAL,
        filter TEXT,
        airmass REAL,
        inst_mag REAL,
        inst_mag_err REAL,
        mag REAL,
        mag_err REAL,
        quality TEXT,
        flags INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (object_id, mjd, exposure_id)
    ) WITHOUT ROWID;
    CREATE INDEX lc_points_exposure ON lc_points (exposure_id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        created_utc TEXT NOT NULL,
        kind TEXT NOT NULL,
        field TEXT,
        target TEXT,
        object_id INTEGER,
        exposure_id INTEGER,
        mjd REAL,
        mag REAL,
        delta_mag REAL,
        significance REAL,
        message TEXT NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE,
        delivered TEXT
    );
    CREATE INDEX alerts_mjd ON alerts (mjd);
    """,
    # night plans (obsctl.night.progress): one row per visit of a target or calibration block, in
    # observatory (possibly simulated) time, so that a restart or the next night continues.
    """
    CREATE TABLE plan_visits (
        id INTEGER PRIMARY KEY,
        plan TEXT NOT NULL,
        night TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        sequence_id INTEGER,
        state TEXT NOT NULL,
        frames_planned INTEGER NOT NULL,
        started_utc TEXT NOT NULL,
        ended_utc TEXT,
        reason TEXT
    );
    CREATE INDEX plan_visits_target ON plan_visits (plan, target, night);
    CREATE INDEX plan_visits_night ON plan_visits (plan, night, state);
    """,
    # source classification (obsctl.classify): class and calibrated probabilities per
    # measurement; class counts and the quality grade per frame.
    """
    ALTER TABLE measurements ADD COLUMN source_class TEXT;
    ALTER TABLE measurements ADD COLUMN p_star REAL;
    ALTER TABLE measurements ADD COLUMN p_galaxy REAL;
    ALTER TABLE measurements ADD COLUMN p_cosmic_ray REAL;
    ALTER TABLE measurements ADD COLUMN p_hot_pixel REAL;
    ALTER TABLE measurements ADD COLUMN p_artifact REAL;
    ALTER TABLE frame_metrics ADD COLUMN n_star INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_galaxy INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_cosmic_ray INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_hot_pixel INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN n_artifact INTEGER;
    ALTER TABLE frame_metrics ADD COLUMN artifact_fraction REAL;
    ALTER TABLE frame_metrics ADD COLUMN quality_score REAL;
    ALTER TABLE frame_metrics ADD COLUMN quality_grade TEXT;
    """,
    # photometric calibration (obsctl.pipeline.nightfit): each star's instrumental and
    # reference magnitudes and colour (and its PSF-fitted flux), the frame's colour term, and
    # the night's fit per filter
    # (extinction, colour term) with each frame's zero point and residual about it.
    """
    ALTER TABLE measurements ADD COLUMN inst_mag REAL;
    ALTER TABLE measurements ADD COLUMN inst_mag_err REAL;
    ALTER TABLE measurements ADD COLUMN ref_mag REAL;
    ALTER TABLE measurements ADD COLUMN ref_mag_err REAL;
    ALTER TABLE measurements ADD COLUMN ref_colour REAL;
    ALTER TABLE measurements ADD COLUMN zp_used INTEGER;
    ALTER TABLE measurements ADD COLUMN flux_psf REAL;
    ALTER TABLE measurements ADD COLUMN flux_psf_err REAL;
    ALTER TABLE frame_metrics ADD COLUMN colour_term REAL;
    ALTER TABLE frame_metrics ADD COLUMN colour_term_err REAL;
    ALTER TABLE frame_metrics ADD COLUMN colour_term_fitted REAL;
    CREATE TABLE night_fits (
        night TEXT NOT NULL,
        filter TEXT NOT NULL,
        mode TEXT NOT NULL,
        photometric INTEGER NOT NULL,
        zp0 REAL,
        zp0_err REAL,
        k REAL,
        k_err REAL,
        colour_term REAL,
        colour_term_err REAL,
        colour_fitted INTEGER NOT NULL,
        rms REAL,
        frame_rms REAL,
        airmass_min REAL,
        airmass_max REAL,
        n_frames INTEGER NOT NULL,
        n_frames_used INTEGER NOT NULL,
        n_stars INTEGER NOT NULL,
        reason TEXT,
        fitted_utc TEXT NOT NULL,
        PRIMARY KEY (night, filter)
    );
    CREATE TABLE night_fit_frames (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        night TEXT NOT NULL,
        filter TEXT NOT NULL,
        airmass REAL,
        zero_point REAL,
        zero_point_err REAL,
        residual REAL,
        n_stars INTEGER NOT NULL,
        used INTEGER NOT NULL
    );
    CREATE INDEX night_fit_frames_night ON night_fit_frames (night, filter);
    """,
    # a slaved dome's slit during a light frame (FITS DOMEAZ, DOMEERR, DOMEOK): dome_ok 0 flags
    # a frame taken with the slit off the telescope; NULL without a dome to slave
    """
    ALTER TABLE exposures ADD COLUMN dome_az_deg REAL;
    ALTER TABLE exposures ADD COLUMN dome_err_deg REAL;
    ALTER TABLE exposures ADD COLUMN dome_ok INTEGER;
    """,
    # archive reprocessing (obsctl.pipeline.runs): a run is its selection and options (the same
    # command finds it again), with the frames chosen at its start and each one's outcome, so
    # that a run interrupted is resumed without redoing what finished
    """
    CREATE TABLE reprocess_runs (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        selection TEXT NOT NULL,
        from_stage TEXT,
        state TEXT NOT NULL,
        n_frames INTEGER NOT NULL,
        created_utc TEXT NOT NULL,
        updated_utc TEXT NOT NULL
    );
    CREATE INDEX reprocess_runs_key ON reprocess_runs (key, state);
    CREATE TABLE reprocess_frames (
        run_id INTEGER NOT NULL REFERENCES reprocess_runs (id),
        exposure_id INTEGER NOT NULL REFERENCES exposures (id),
        state TEXT NOT NULL,
        stage TEXT,
        reason TEXT,
        seconds REAL,
        updated_utc TEXT,
        PRIMARY KEY (run_id, exposure_id)
    ) WITHOUT ROWID;
    CREATE INDEX reprocess_frames_state ON reprocess_frames (run_id, state);
    """,
    # what kind of variable a monitored target is (obsctl.timeseries.classifier): the period
    # search's method and false-alarm probability, the classifier's class, its probability,
    # every class's probability (JSON), the anomaly score (the anomaly model's score less its
    # threshold: above 0 is unlike every class), and the class last alerted (a class change is
    # alerted once)
    """
    ALTER TABLE lc_objects ADD COLUMN period_method TEXT;
    ALTER TABLE lc_objects ADD COLUMN period_fap REAL;
    ALTER TABLE lc_objects ADD COLUMN var_class TEXT;
    ALTER TABLE lc_objects ADD COLUMN var_class_prob REAL;
    ALTER TABLE lc_objects ADD COLUMN var_probs TEXT;
    ALTER TABLE lc_objects ADD COLUMN anomaly_score REAL;
    ALTER TABLE lc_objects ADD COLUMN alerted_class TEXT;
    """,
    # focus runs (obsctl.acquisition.autofocus): why it ran, where it started, the points
    # (JSON [[position, hfr_px, n_stars], ...]), the V-curve fitted (hyperbola; the parabola's
    # minimum for comparison), where the focuser was left and the check frame's HFR; outcome
    # "focused", "refused" (no V: back at the start) or "failed" (a device or safety stopped
    # it), with the reason
    """
    CREATE TABLE focus_runs (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        started_utc TEXT NOT NULL,
        trigger TEXT NOT NULL,
        filter TEXT,
        temperature_c REAL,
        start_position INTEGER NOT NULL,
        points TEXT NOT NULL,
        best_position REAL,
        best_hfr_px REAL,
        half_width_steps REAL,
        fit_rms_px REAL,
        parabola_position REAL,
        final_position INTEGER NOT NULL,
        check_hfr_px REAL,
        outcome TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX focus_runs_night ON focus_runs (night, started_utc);
    """,
    # centring runs (obsctl.acquisition.centring): the target, each frame's solved centre and
    # its distance from the target (JSON [[ra_deg, dec_deg, error_arcsec, blind_offset_arcmin],
    # ...], null where a frame did not solve), the corrections made, the pier side; outcome
    # "centred", "not centred" (out of corrections), "unsolved" or "failed", with the reason
    """
    CREATE TABLE centring_runs (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        started_utc TEXT NOT NULL,
        target TEXT,
        ra_deg REAL NOT NULL,
        dec_deg REAL NOT NULL,
        method TEXT NOT NULL,
        pier_side TEXT,
        frames TEXT NOT NULL,
        corrections INTEGER NOT NULL,
        error_arcsec REAL,
        outcome TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX centring_runs_night ON centring_runs (night, started_utc);
    """,
    # drift correction (obsctl.acquisition.drift_keeper): per visit (a sequence's target),
    # its light frames' measured shifts against the first after correction (rms and worst,
    # pixel), the corrections made and refused, and the drift taken out (pixel)
    """
    CREATE TABLE drift_visits (
        id INTEGER PRIMARY KEY,
        night TEXT NOT NULL,
        sequence_id INTEGER,
        target TEXT NOT NULL,
        frames INTEGER NOT NULL,
        corrections INTEGER NOT NULL,
        refused INTEGER NOT NULL,
        rms_px REAL NOT NULL,
        max_px REAL NOT NULL,
        corrected_x_px REAL NOT NULL,
        corrected_y_px REAL NOT NULL,
        UNIQUE (sequence_id, target)
    );
    """,
    # reference images for difference imaging (obsctl.pipeline.reference): per field (the
    # exposures' target), filter and camera, the combined image's file, the frames combined
    # (JSON list of exposure ids: its provenance), the frame whose pixel grid it is on, its
    # stellar FWHM (px), zero point (PHOTZP of that frame, whose flux scale the reference
    # keeps) and 5-sigma point-source limiting magnitude, and whether it is the one in use
    # (an older one is kept, not current)
    """
    CREATE TABLE reference_images (
        id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        filter TEXT,
        camera TEXT,
        path TEXT NOT NULL,
        built_utc TEXT NOT NULL,
        trigger TEXT NOT NULL,
        exposure_ids TEXT NOT NULL,
        n_frames INTEGER NOT NULL,
        grid_exposure_id INTEGER NOT NULL,
        fwhm_px REAL,
        zero_point REAL,
        limiting_mag REAL,
        n_sources INTEGER,
        current INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX reference_images_field ON reference_images (field, filter, camera, current);
    """,
    # difference imaging (obsctl.pipeline.difference): per frame, the reference subtracted,
    # the candidates' file (cutouts), how many detections were found and left out, the flux
    # ratio and the difference's sky noise (ADU); per candidate (kind 'detection'), forced
    # monitored target ('target') or forced known transient ('transient'), its position,
    # peak score, forced PSF flux (ADU), S/N and magnitude, its row in the file's cutouts,
    # and what later steps decide: the real/bogus score, the transient and the moving-object
    # track it belongs to (obsctl.timeseries.transients). A transient is a position that
    # recurred on the differences (its host galaxy's offset when one is near); a moving object
    # a track of detections linked in time (rate, direction). Alerts gain a position and
    # details (JSON: cutouts, host, track).
    """
    CREATE TABLE difference_frames (
        exposure_id INTEGER PRIMARY KEY REFERENCES exposures (id),
        reference_id INTEGER NOT NULL REFERENCES reference_images (id),
        path TEXT NOT NULL,
        detections INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        flux_ratio REAL NOT NULL,
        sky_noise REAL NOT NULL
    );
    CREATE TABLE difference_candidates (
        id INTEGER PRIMARY KEY,
        exposure_id INTEGER NOT NULL REFERENCES exposures (id),
        row INTEGER NOT NULL,
        kind TEXT NOT NULL,
        target TEXT,
        x REAL NOT NULL,
        y REAL NOT NULL,
        ra_deg REAL,
        dec_deg REAL,
        score REAL,
        flux REAL,
        flux_err REAL,
        snr REAL,
        mag REAL,
        mag_err REAL,
        real_bogus REAL,
        transient_id INTEGER,
        track_id INTEGER
    );
    CREATE INDEX difference_candidates_frame ON difference_candidates (exposure_id);
    CREATE INDEX difference_candidates_target ON difference_candidates (target);
    CREATE INDEX difference_candidates_transient ON difference_candidates (transient_id);
    CREATE TABLE transients (
        id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        ra_deg REAL NOT NULL,
        dec_deg REAL NOT NULL,
        first_mjd REAL NOT NULL,
        last_mjd REAL NOT NULL,
        detections INTEGER NOT NULL,
        peak_mag REAL,
        host_ra_deg REAL,
        host_dec_deg REAL,
        host_offset_arcsec REAL,
        host_pa_deg REAL,
        alerted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX transients_field ON transients (field);
    CREATE TABLE moving_objects (
        id INTEGER PRIMARY KEY,
        field TEXT NOT NULL,
        night TEXT NOT NULL,
        epoch_mjd REAL NOT NULL,
        ra_deg REAL NOT NULL,
        dec_deg REAL NOT NULL,
        rate_arcsec_min REAL NOT NULL,
        pa_deg REAL NOT NULL,
        mag REAL,
        mag_err REAL,
        rms_arcsec REAL NOT NULL,
        detections INTEGER NOT NULL
    );
    CREATE INDEX moving_objects_night ON moving_objects (night, field);
    ALTER TABLE alerts ADD COLUMN ra_deg REAL;
    ALTER TABLE alerts ADD COLUMN dec_deg REAL;
    ALTER TABLE alerts ADD COLUMN details TEXT;
    """,
)

#: Frame metrics the pipeline stores per frame (``frame_metrics``), from its stages' metrics.
FRAME_METRIC_COLUMNS: tuple[str, ...] = (
    "fwhm_px",
    "fwhm_arcsec",
    "hfr_px",
    "hfr_arcsec",
    "ellipticity",
    "star_count",
    "background",
    "background_rms",
    "zero_point",
    "zero_point_err",
    "limiting_mag",
    "wcs_rms_arcsec",
    # classify stage
    "n_star",
    "n_galaxy",
    "n_cosmic_ray",
    "n_hot_pixel",
    "n_artifact",
    "artifact_fraction",
    # zeropoint stage
    "colour_term",
    "colour_term_err",
    "colour_term_fitted",
)

#: Catalog columns the pipeline stores per source (``measurements``), when the catalog has them.
MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "x",
    "y",
    "ra_deg",
    "dec_deg",
    "flux",
    "flux_err",
    "flux_auto",
    "flux_auto_err",
    "mag",
    "mag_err",
    "fwhm_px",
    "flags",
    # classify stage
    "source_class",
    "p_star",
    "p_galaxy",
    "p_cosmic_ray",
    "p_hot_pixel",
    "p_artifact",
    # zeropoint stage: the night's extinction and colour fit works from these
    "inst_mag",
    "inst_mag_err",
    "ref_mag",
    "ref_mag_err",
    "ref_colour",
    "zp_used",
    # photometry stage, PSF fit (obsctl.processing.psf)
    "flux_psf",
    "flux_psf_err",
)

#: Columns of ``night_fits``: a night's photometric solution per filter.
NIGHT_FIT_COLUMNS: tuple[str, ...] = (
    "night",
    "filter",
    "mode",
    "photometric",
    "zp0",
    "zp0_err",
    "k",
    "k_err",
    "colour_term",
    "colour_term_err",
    "colour_fitted",
    "rms",
    "frame_rms",
    "airmass_min",
    "airmass_max",
    "n_frames",
    "n_frames_used",
    "n_stars",
    "reason",
    "fitted_utc",
)

#: Columns of ``night_fit_frames``: each frame's zero point in the night's fit.
NIGHT_FIT_FRAME_COLUMNS: tuple[str, ...] = (
    "exposure_id",
    "night",
    "filter",
    "airmass",
    "zero_point",
    "zero_point_err",
    "residual",
    "n_stars",
    "used",
)
