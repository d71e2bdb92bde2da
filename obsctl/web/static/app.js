// The obsctl quick-look page: the latest frame with its sources, the observatory's state,
// the night's trends, exposure log and light curves, kept live by the daemon's event stream.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);
  const TREND_KEYS = [
    ["fwhm_arcsec", "FWHM (arcsec)"],
    ["star_count", "stars"],
    ["background", "background (ADU)"],
    ["zero_point", "zero point (mag)"],
    ["limiting_mag", "limiting magnitude"],
    ["airmass", "airmass"],
  ];
  const CLASS_COLOURS = {
    unclassified: "#9ccc65",
    star: "#4fc3f7",
    galaxy: "#ffb74d",
    artifact: "#e57373",
    artefact: "#e57373",
    cosmic: "#e57373",
    cosmic_ray: "#e57373",
    hot_pixel: "#ba68c8",
    satellite: "#f06292",
    variable: "#fff176",
  };
  const KNOWN_ACTIVITY = new Set([
    "state",
    "sequence_id",
    "sequence_name",
    "step_index",
    "frame_index",
    "image_type",
    "exposure_s",
    "exposure_start",
    "safety_abort",
    "paused_reason", // shown in the banner
  ]);
  const PALETTE = ["#4dd0e1", "#ffd54f", "#a1887f", "#90a4ae", "#f48fb1", "#aed581", "#7986cb"];
  const FILTER_COLOURS = { B: "#64b5f6", V: "#81c784", R: "#e57373", I: "#ba68c8", L: "#e0e0e0" };

  const state = {
    info: null,
    night: null,
    follow: true,
    stretch: "zscale",
    frame: null, // the frame info shown
    sources: null,
    preview: null, // {bitmap, region: [x0, y0, x1, y1], factor}
    tile: null, // a sharper part of the frame when zoomed in
    wcs: null,
    view: null, // {scale (screen px per frame px), cx, cy (frame px at the canvas centre)}
    log: [],
    trends: new Map(), // exposure id -> metrics row
    extinction: null, // the night's fit: {night, filters: [...], frames: [...]}
    focus: null, // the night's focus runs: {night, total, runs: [...]}, newest first
    focusRun: null, // the id of the run drawn; null: the newest
    focusToken: 0,
    candidates: null, // the night's difference candidates, transients and moving objects
    candidatesToken: 0,
    shown: [], // {exposure_id, latency_ms, processed_ms, shown_ms, sources}
    statusTimer: null,
    loadToken: 0,
    loads: 0, // frames shown so far
    lightcurveRoutes: false,
  };
  window.quicklook = state;

  // -- helpers ---------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function httpError(reply, what) {
    let message = reply.statusText;
    try {
      message = (await reply.json()).error || message;
    } catch (_) {
      /* not JSON */
    }
    return new HttpError(reply.status, what ? `${what}: ${message}` : message);
  }

  async function api(path) {
    const reply = await fetch(path, { cache: "no-store" });
    if (!reply.ok) throw await httpError(reply, path);
    return reply.json();
  }

  // The URL of the next page of a listing, from its `Link: <url>; rel="next"` header.
  function nextPage(link) {
    const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link || "");
    return match ? match[1] : null;
  }

  // Every row of a paged listing: the server sends at most `limit` rows a reply.
  async function apiAll(path) {
    const rows = [];
    for (let url = path; url; ) {
      const reply = await fetch(url, { cache: "no-store" });
      if (!reply.ok) throw await httpError(reply, path);
      rows.push(...(await reply.json()));
      url = nextPage(reply.headers.get("Link"));
    }
    return rows;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  }

  function fixed(v, digits) {
    return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "";
  }

  // Numbers as people read them: no binary rounding noise (0.30000000000000004), no more
  // digits than the value has. Anything not a finite number is shown as it is.
  const format = {
    // Exposure times: milliseconds at most from 1 s up, three significant digits below.
    seconds(v) {
      if (typeof v !== "number" || !Number.isFinite(v)) return String(v ?? "");
      return String(Math.abs(v) >= 1 ? Number(v.toFixed(3)) : Number(v.toPrecision(3)));
    },
    // Header values and other numbers: whole numbers in full, others to 12 significant
    // digits (an MJD to the millisecond, a CD matrix to its last meaningful digit).
    number(v) {
      if (typeof v !== "number" || !Number.isFinite(v)) return String(v ?? "");
      return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(12)));
    },
  };
  window.ObsFormat = format;

  function classColour(name) {
    if (CLASS_COLOURS[name]) return CLASS_COLOURS[name];
    let h = 0;
    for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function hasRoute(path) {
    return Boolean(state.info && state.info.routes.includes(path));
  }

  // -- the viewer ------------------------------------------------------------------------

  const viewer = $("#viewer");
  const imageCanvas = $("#image-canvas");
  const overlayCanvas = $("#overlay-canvas");

  function canvasSize() {
    return [viewer.clientWidth, viewer.clientHeight];
  }

  // The display image's longest side. The server makes each new frame's preview ahead at
  // one size (info.preview_size_px): ask for that, unless it would be magnified 1.5 times
  // or more, where a zoomed view fetches sharper tiles too (then the viewer's own size in
  // device pixels, in steps of 256, so that every frame asks for the same size).
  function previewSize() {
    const [w, h] = canvasSize();
    const px = Math.max(w, h) * (window.devicePixelRatio || 1);
    const made = (state.info && state.info.preview_size_px) || 1024;
    return px < 1.5 * made ? made : Math.min(4096, Math.ceil(px / 256) * 256);
  }

  function fitView(shape) {
    const [w, h] = canvasSize();
    const [ny, nx] = shape;
    state.view = {
      scale: Math.min(w / nx, h / ny) * 0.98,
      cx: (nx - 1) / 2,
      cy: (ny - 1) / 2,
    };
  }

  function toScreen(fx, fy) {
    const [w, h] = canvasSize();
    const v = state.view;
    return [w / 2 + (fx - v.cx) * v.scale, h / 2 - (fy - v.cy) * v.scale];
  }

  function toFrame(sx, sy) {
    const [w, h] = canvasSize();
    const v = state.view;
    return [v.cx + (sx - w / 2) / v.scale, v.cy - (sy - h / 2) / v.scale];
  }

  function prepareCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const [w, h] = canvasSize();
    const W = Math.round(w * dpr);
    const H = Math.round(h * dpr);
    if (canvas.width !== W) canvas.width = W;
    if (canvas.height !== H) canvas.height = H;
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    return g;
  }

  function drawImagePart(g, bitmap, region) {
    const [x0, y0, x1, y1] = region;
    const [left, top] = toScreen(x0 - 0.5, y1 - 0.5);
    const scale = state.view.scale;
    g.drawImage(bitmap, left, top, (x1 - x0) * scale, (y1 - y0) * scale);
  }

  function render() {
    const g = prepareCanvas(imageCanvas);
    if (!state.preview || !state.view) return;
    // Magnified display pixels stay crisp: they are data, not a photograph.
    g.imageSmoothingEnabled = state.view.scale * state.preview.factor < 1.5;
    drawImagePart(g, state.preview.bitmap, state.preview.region);
    const tile = state.tile;
    if (tile && tile.exposure === state.frame.exposure_id && tile.stretch === state.stretch) {
      g.imageSmoothingEnabled = state.view.scale * tile.factor < 1.5;
      drawImagePart(g, tile.bitmap, tile.region);
    }
    renderOverlay();
  }

  function renderOverlay() {
    const g = prepareCanvas(overlayCanvas);
    const src = state.sources;
    if (!src || !state.view) return;
    overlayCanvas.dataset.exposure = String(src.exposure_id);
    let drawn = 0;
    const show = $("#show-sources").checked;
    const [w, h] = canvasSize();
    g.lineWidth = 1.2;
    for (const row of src.rows) {
      const [x, y, , , fwhm, , klass] = row;
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      drawn += 1;
      if (!show) continue;
      const [sx, sy] = toScreen(x, y);
      const r = Math.max(4, 1.5 * (fwhm || 3) * state.view.scale);
      if (sx < -r || sy < -r || sx > w + r || sy > h + r) continue;
      g.strokeStyle = classColour(klass);
      g.beginPath();
      g.arc(sx, sy, r, 0, 2 * Math.PI);
      g.stroke();
    }
    // Markers placed for the frame's sources (all of them, on screen or not).
    overlayCanvas.dataset.count = String(drawn);
  }

  function renderLegend() {
    const src = state.sources;
    const legend = $("#legend");
    if (!src) {
      legend.innerHTML = "";
      return;
    }
    const counts = new Map();
    for (const row of src.rows) counts.set(row[6], (counts.get(row[6]) || 0) + 1);
    const parts = [`<span id="source-count">${src.count} sources</span>`];
    if (state.frame && state.frame.catalog_count !== null) {
      parts.push(`<span class="muted">catalog: ${state.frame.catalog_count}</span>`);
    }
    for (const [name, n] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
      const colour = classColour(name);
      parts.push(
        `<span class="class-entry" data-class="${esc(name)}"><span class="swatch" style="color:${colour}"></span>${esc(name)} ${n}</span>`,
      );
    }
    if (!src.class_column) parts.push('<span class="muted">(no classifier output yet)</span>');
    legend.innerHTML = parts.join("");
  }

  function renderHeader() {
    const f = state.frame;
    const cards = f ? f.cards.map(([k, v, c]) => `<div title="${esc(c)}"><span class="key">${esc(k)}</span> <span class="mono">${esc(format.number(v))}</span></div>`) : [];
    $("#header-cards").innerHTML = cards.join("");
    const e = f ? f.exposure : null;
    $("#frame-title").textContent = e
      ? `#${e.id} ${e.target || ""} ${e.filter || ""} ${format.seconds(e.exposure_s)}s ${(e.date_obs || "").slice(11, 19)} UT (${f.image})`
      : "no frame yet";
    const links = [];
    if (f) {
      for (const [kind, url] of Object.entries(f.files)) {
        if (url) links.push(`<a href="${esc(url)}" download>${kind} FITS</a>`);
      }
    }
    $("#downloads").innerHTML = links.join(" · ");
  }

  async function loadImage(url) {
    const reply = await fetch(url, { cache: "no-store" });
    if (!reply.ok) throw await httpError(reply);
    const region = (reply.headers.get("X-Region") || "0,0,1,1").split(",").map(Number);
    const factor = Number(reply.headers.get("X-Factor") || 1);
    const bitmap = await createImageBitmap(await reply.blob());
    return { bitmap, region, factor };
  }

  // Show a frame; `processedMs` (the server's processing time of it, ms since the epoch)
  // makes this display count towards the latency figure.
  async function showFrame(id, processedMs) {
    const token = ++state.loadToken;
    const base = `/api/quicklook/frames/${id}`;
    const previewUrl = `${base}/preview.png?stretch=${state.stretch}&size=${previewSize()}`;
    let info;
    let sources;
    let preview;
    try {
      [info, sources, preview] = await Promise.all([
        api(base),
        api(`${base}/sources`),
        loadImage(previewUrl),
      ]);
    } catch (err) {
      if (token === state.loadToken) $("#viewer-empty").textContent = `cannot show frame ${id}: ${err.message}`;
      return null;
    }
    if (token !== state.loadToken) return info; // a newer frame was asked for meanwhile
    const sameShape =
      state.frame && state.frame.shape[0] === info.shape[0] && state.frame.shape[1] === info.shape[1];
    state.frame = info;
    state.sources = sources;
    state.preview = preview;
    state.tile = null;
    state.wcs = window.ObsWcs.fromKeys(info.wcs);
    if (!sameShape || !state.view) fitView(info.shape);
    $("#viewer-empty").hidden = true;
    render();
    renderLegend();
    renderHeader();
    markCurrentRow();
    drawTrends();
    requestTile();
    state.loads += 1;
    const shownMs = performance.timeOrigin + performance.now();
    performance.mark(`frame-shown-${id}`);
    if (processedMs !== undefined) {
      const latency = shownMs - processedMs;
      state.shown.push({
        exposure_id: id,
        latency_ms: latency,
        processed_ms: processedMs,
        shown_ms: shownMs,
        sources: sources.count,
        factor: preview.factor,
      });
      $("#latency").textContent = `frame #${id} shown ${(latency / 1000).toFixed(2)} s after processing`;
    }
    return info;
  }

  // A sharper part of the frame once the display pixels are magnified.
  const requestTile = debounce(async () => {
    const f = state.frame;
    const p = state.preview;
    if (!f || !p || !state.view || state.view.scale * p.factor < 1.5) return;
    const [w, h] = canvasSize();
    const [ax, ay] = toFrame(0, h);
    const [bx, by] = toFrame(w, 0);
    const box = [Math.floor(ax), Math.floor(ay), Math.ceil(bx) + 1, Math.ceil(by) + 1];
    const url =
      `/api/quicklook/frames/${f.exposure_id}/preview.png?stretch=${state.stretch}` +
      `&size=${previewSize()}&x0=${box[0]}&y0=${box[1]}&x1=${box[2]}&y1=${box[3]}`;
    const exposure = f.exposure_id;
    const stretch = state.stretch;
    try {
      const tile = await loadImage(url);
      if (state.frame && state.frame.exposure_id === exposure && state.stretch === stretch) {
        state.tile = { ...tile, exposure, stretch };
        render();
      }
    } catch (err) {
      console.warn("zoomed tile", err.message);
    }
  }, 150);

  function zoomAt(sx, sy, factor) {
    if (!state.view) return;
    const [fx, fy] = toFrame(sx, sy);
    const [w, h] = canvasSize();
    const scale = Math.min(64, Math.max(0.005, state.view.scale * factor));
    state.view = { scale, cx: fx - (sx - w / 2) / scale, cy: fy + (sy - h / 2) / scale };
    render();
    requestTile();
  }

  let drag = null;
  viewer.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = viewer.getBoundingClientRect();
    zoomAt(ev.clientX - rect.left, ev.clientY - rect.top, Math.exp(-ev.deltaY * 0.0015));
  }, { passive: false });
  viewer.addEventListener("mousedown", (ev) => {
    drag = { x: ev.clientX, y: ev.clientY, view: { ...state.view } };
    viewer.classList.add("dragging");
  });
  window.addEventListener("mouseup", () => {
    if (drag) requestTile();
    drag = null;
    viewer.classList.remove("dragging");
  });
  viewer.addEventListener("mousemove", (ev) => {
    const rect = viewer.getBoundingClientRect();
    const sx = ev.clientX - rect.left;
    const sy = ev.clientY - rect.top;
    if (drag && state.view) {
      const s = drag.view.scale;
      state.view = {
        scale: s,
        cx: drag.view.cx - (ev.clientX - drag.x) / s,
        cy: drag.view.cy + (ev.clientY - drag.y) / s,
      };
      render();
      return;
    }
    showCursor(sx, sy);
  });
  viewer.addEventListener("dblclick", (ev) => {
    const rect = viewer.getBoundingClientRect();
    zoomAt(ev.clientX - rect.left, ev.clientY - rect.top, 2);
  });

  $("#zoom-fit").addEventListener("click", () => {
    if (state.frame) fitView(state.frame.shape);
    render();
  });
  $("#zoom-one").addEventListener("click", () => {
    const [w, h] = canvasSize();
    zoomAt(w / 2, h / 2, 1 / (state.view ? state.view.scale : 1));
  });
  $("#zoom-in").addEventListener("click", () => zoomAt(...canvasSize().map((v) => v / 2), 2));
  $("#zoom-out").addEventListener("click", () => zoomAt(...canvasSize().map((v) => v / 2), 0.5));
  $("#show-sources").addEventListener("change", renderOverlay);
  $("#stretch").addEventListener("change", (ev) => {
    state.stretch = ev.target.value;
    if (state.frame) showFrame(state.frame.exposure_id);
  });
  window.addEventListener("resize", debounce(render, 100));
  window.addEventListener("keydown", (ev) => {
    if (ev.target.closest && ev.target.closest("input, select, textarea")) return;
    const buttons = { f: "#zoom-fit", 1: "#zoom-one", "+": "#zoom-in", "=": "#zoom-in", "-": "#zoom-out" };
    if (buttons[ev.key]) $(buttons[ev.key]).click();
  });

  // The pixel under the cursor: its value from the server (the display shows block means),
  // at most one request in flight.
  const pixel = { busy: false, want: null, last: null };

  function showCursor(sx, sy) {
    if (!state.frame || !state.view) return;
    const [fx, fy] = toFrame(sx, sy);
    const x = Math.round(fx);
    const y = Math.round(fy);
    const [ny, nx] = state.frame.shape;
    if (x < 0 || y < 0 || x >= nx || y >= ny) {
      $("#cursor").textContent = " ";
      return;
    }
    pixel.want = [state.frame.exposure_id, x, y];
    writeCursor();
    fetchPixel();
  }

  function writeCursor() {
    const [id, x, y] = pixel.want;
    let text = `x ${x + 1}  y ${y + 1}`;
    const last = pixel.last;
    if (last && last[0] === id && last[1] === x && last[2] === y) {
      text += `  value ${last[3] === null ? "—" : window.ObsPlot.fmtNum(last[3])}`;
    }
    if (state.wcs) {
      const [ra, dec] = state.wcs.pixToSky(x, y);
      text += `  RA ${window.ObsWcs.sexagesimal(ra, true)}  Dec ${window.ObsWcs.sexagesimal(dec, false)}`;
      text += `  (${ra.toFixed(5)}°, ${dec.toFixed(5)}°)`;
    }
    $("#cursor").textContent = text;
  }

  async function fetchPixel() {
    if (pixel.busy || !pixel.want) return;
    const [id, x, y] = pixel.want;
    const last = pixel.last;
    if (last && last[0] === id && last[1] === x && last[2] === y) return;
    pixel.busy = true;
    try {
      const r = await api(`/api/quicklook/frames/${id}/pixel?x=${x}&y=${y}`);
      pixel.last = [id, x, y, r.value];
      writeCursor();
    } catch (err) {
      console.warn("pixel value", err.message);
    } finally {
      pixel.busy = false;
    }
    fetchPixel();
  }

  // -- current state ---------------------------------------------------------------------

  function dl(pairs) {
    return `<dl>${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`;
  }

  function flat(value, prefix = "") {
    if (value === null || typeof value !== "object") return [[prefix, esc(format.number(value))]];
    return Object.entries(value).flatMap(([k, v]) => flat(v, prefix ? `${prefix}.${k}` : k));
  }

  // Acquisition paused by the daemon (a storage failure...): said at the top of the page,
  // whatever else is shown, until the activity no longer carries a reason.
  function renderPaused(a) {
    const reason = a.paused_reason;
    const banner = $("#paused");
    const paused = reason !== null && reason !== undefined && reason !== "";
    banner.hidden = !paused;
    banner.textContent = paused ? `acquisition paused: ${typeof reason === "string" ? reason : JSON.stringify(reason)}` : "";
  }

  // The zero points as a cloud sensor: the latest frame's transparency, and whether light
  // frames wait for the clouds to pass (the roof stays open).
  function transparencyText(t) {
    const latest = t.latest ? `transparency ${fixed(t.latest.transparency, 2)} (${esc(t.latest.filter)})` : "no frame measured yet";
    return t.cloudy ? `<span class="bad">LIGHTS PAUSED</span> <span class="muted">${esc(t.reason)}</span>` : latest;
  }

  function renderStatus(s) {
    const parts = [];
    const a = s.activity || {};
    renderPaused(a);
    const safety = s.safety || {};
    const cam = (s.devices || {}).camera || {};
    const wheel = (s.devices || {}).filter_wheel;
    const mount = (s.devices || {}).mount;
    parts.push(
      dl([
        ["safety", `<span class="${safety.safe ? "good" : "bad"}">${safety.safe ? "SAFE" : "UNSAFE"}</span> <span class="muted">${esc(safety.reason)}</span>`],
        ...(safety.safe ? [] : [["safe in", typeof safety.safe_in_s === "number" ? (safety.safe_in_s < 120 ? `${Math.round(safety.safe_in_s)} s` : `${Math.round(safety.safe_in_s / 60)} min`) : "unknown (waiting for the values to clear)"]]),
        ...(safety.weather ? [["weather", Object.entries(safety.weather).map(([k, v]) => `${esc(k)} ${fixed(v, 1)}`).join(", ") || "—"]] : []),
        ...(safety.unwatched && safety.unwatched.length ? [["not watched", `<span class="bad">${safety.unwatched.map(esc).join(", ")}</span> <span class="muted">(the station does not report them)</span>`]] : []),
        ...(safety.transparency ? [["clouds in frames", transparencyText(safety.transparency)]] : []),
        ["activity", esc(a.state)],
        ["sequence", a.sequence_id != null ? `${esc(a.sequence_name)} #${a.sequence_id}, step ${a.step_index + 1}, frame ${a.frame_index != null ? a.frame_index + 1 : "—"}` : "—"],
        ["frame", a.image_type ? `${esc(a.image_type)} ${esc(format.seconds(a.exposure_s))} s` : "—"],
        // Anything else the activity carries (a plan, its step...), as it comes.
        ...Object.entries(a)
          .filter(([k, v]) => !KNOWN_ACTIVITY.has(k) && v !== null && v !== undefined)
          .flatMap(([k, v]) => flat(v, k)),
      ]),
    );
    if (cam.error) {
      parts.push(dl([["camera", `<span class="bad">${esc(cam.error)}</span>`]]));
    } else if (cam.state) {
      const pct = typeof cam.percent_completed === "number" ? cam.percent_completed : null;
      const exposing = cam.state === "EXPOSING";
      parts.push(
        dl([
          ["camera", `${esc(cam.state)}${exposing && pct !== null ? ` ${pct}%` : ""}<div class="progress" id="exposure-progress"><div style="width:${exposing && pct !== null ? pct : 0}%"></div></div>`],
          ["cooler", `${cam.cooler_on ? "on" : "off"} ${fixed(cam.ccd_temperature_c, 1)} °C (set ${fixed(cam.set_temperature_c, 1)} °C, ${fixed(cam.cooler_power_pct, 0)} %)`],
        ]),
      );
    }
    if (wheel) parts.push(dl([["filter", wheel.error ? `<span class="bad">${esc(wheel.error)}</span>` : esc(wheel.filter ?? "moving")]]));
    if (mount) {
      parts.push(
        mount.error
          ? dl([["mount", `<span class="bad">${esc(mount.error)}</span>`]])
          : dl([
              ["mount", `${mount.at_park ? "parked" : mount.slewing ? "slewing" : "pointing"}, tracking ${mount.tracking ? "on" : "off"}, pier ${esc(mount.pier_side)}`],
              ["RA / Dec", `${window.ObsWcs.sexagesimal(mount.ra_deg, true)} ${window.ObsWcs.sexagesimal(mount.dec_deg, false)}`],
              ["alt / az", `${fixed(mount.alt_deg, 1)}° / ${fixed(mount.az_deg, 1)}°`],
            ]),
      );
    }
    const dome = (s.devices || {}).dome;
    if (dome) {
      const where = typeof dome.azimuth_deg === "number" ? `, azimuth ${fixed(dome.azimuth_deg, 1)}°` : "";
      parts.push(dl([["roof", dome.error ? `<span class="bad">${esc(dome.error)}</span>` : `${esc((dome.shutter ?? "unknown").toLowerCase())}${where}${dome.at_park ? ", parked" : ""}`]]));
    }
    const panel = (s.devices || {}).cover_calibrator;
    if (panel) {
      const lamp = panel.calibrator === "NOT_PRESENT" ? "" : `, panel ${esc(panel.calibrator.toLowerCase().replace("_", " "))}${panel.calibrator === "READY" ? ` at ${esc(panel.brightness)}` : ""}`;
      parts.push(dl([["cover", panel.error ? `<span class="bad">${esc(panel.error)}</span>` : `${esc(panel.cover.toLowerCase().replace("_", " "))}${lamp}`]]));
    }
    // Devices down (they would not connect, or stopped answering): what needs them waits.
    const health = Object.values(s.health || {});
    if (health.length) {
      parts.push(
        dl(
          health.map((h) => [
            h.role,
            h.connected
              ? `<span class="good">up</span>`
              : `<span class="bad">DOWN</span> <span class="muted">${h.since ? `since ${esc(h.since.slice(0, 19).replace("T", " "))} UTC: ` : ""}${esc(h.last_error ?? "")}</span>`,
          ]),
        ),
      );
    }
    const q = s.queue || {};
    const listed = q.sequences || [];
    let seqs = listed.map((x) => `${esc(x.name)} (${esc(x.state)})`).join(", ") || "—";
    if (q.sequences_total > listed.length) seqs += ` and ${q.sequences_total - listed.length} more`;
    const proc = q.processing ? Object.entries(q.processing).map(([k, v]) => `${esc(k)} ${v}`).join(", ") || "—" : "off";
    parts.push(dl([["queue", seqs], ["to store", esc(q.frames_to_store ?? 0)], ["pipeline", proc]]));
    // Whatever else the daemon reports (a running plan step, a schedule...), as it comes.
    const known = new Set(["activity", "safety", "devices", "health", "queue"]);
    for (const [key, value] of Object.entries(s)) {
      if (known.has(key) || value === null || value === undefined) continue;
      parts.push(`<h2>${esc(key)}</h2>` + dl(flat(value).slice(0, 20)));
    }
    $("#state").innerHTML = parts.join("");
  }

  async function refreshStatus() {
    clearTimeout(state.statusTimer);
    try {
      renderStatus(await api("/api/status"));
    } catch (err) {
      $("#state").innerHTML = `<p class="bad">${esc(err.message)}</p>`;
    }
    state.statusTimer = setTimeout(refreshStatus, 2000);
  }
  const refreshStatusSoon = debounce(refreshStatus, 100);

  // -- trends ----------------------------------------------------------------------------

  function buildTrendPlots() {
    $("#trends").innerHTML = TREND_KEYS.map(
      ([key, title]) => `<div class="plot"><div class="title">${esc(title)}</div><canvas id="trend-${key}" data-points="0"></canvas></div>`,
    ).join("");
    for (const [key] of TREND_KEYS) {
      const canvas = $(`#trend-${key}`);
      canvas.addEventListener("click", (ev) => {
        const rect = canvas.getBoundingClientRect();
        const hit = (canvas._drawn || []).find((d) => Math.hypot(d.X - (ev.clientX - rect.left), d.Y - (ev.clientY - rect.top)) < 6);
        if (hit) openFrame(hit.p.id);
      });
    }
  }

  function drawTrends() {
    const rows = [...state.trends.values()].sort((a, b) => a.mjd_mid - b.mjd_mid);
    const current = state.frame ? state.frame.exposure_id : undefined;
    for (const [key] of TREND_KEYS) {
      const points = rows.map((r) => ({ x: r.mjd_mid, y: r[key], id: r.exposure_id, color: FILTER_COLOURS[r.filter] }));
      const canvas = $(`#trend-${key}`);
      canvas._drawn = window.ObsPlot.draw(canvas, points, { highlight: current });
    }
  }

  function upsertTrend(info) {
    const e = info.exposure;
    if (e.night !== state.night || info.metrics.star_count === null) return;
    state.trends.set(e.id, { exposure_id: e.id, mjd_mid: e.mjd_mid, airmass: e.airmass, filter: e.filter, ...info.metrics });
    drawTrends();
  }

  async function loadTrends() {
    const rows = await apiAll(`/api/metrics?night=${encodeURIComponent(state.night || "")}&limit=1000`);
    state.trends = new Map(rows.map((r) => [r.exposure_id, r]));
    drawTrends();
  }

  // -- exposure log ----------------------------------------------------------------------

  function logRowHtml(r) {
    return (
      `<tr data-id="${r.id}" data-type="${esc(r.image_type)}" data-filter="${esc(r.filter ?? "")}">` +
      `<td class="num">${r.id}</td><td>${esc((r.date_obs || "").slice(11, 19))}</td><td>${esc(r.target ?? "")}</td>` +
      `<td>${esc(r.image_type)}</td><td>${esc(r.filter ?? "")}</td><td class="num">${esc(format.seconds(r.exposure_s))}</td>` +
      `<td class="num">${fixed(r.airmass, 3)}</td><td>${esc(r.status)}</td><td>${esc(r.processing ?? "")}</td>` +
      `<td class="num">${fixed(r.fwhm_arcsec, 2)}</td><td class="num">${esc(r.star_count ?? "")}</td><td class="num">${fixed(r.zero_point, 2)}</td></tr>`
    );
  }

  function renderLog() {
    const body = $("#log tbody");
    body.innerHTML = state.log.map(logRowHtml).join("");
    const fill = (sel, values, label) => {
      const el = $(sel);
      const keep = el.value;
      el.innerHTML = `<option value="">${label}</option>` + [...values].sort().map((v) => `<option>${esc(v)}</option>`).join("");
      el.value = [...values].includes(keep) ? keep : "";
    };
    fill("#log-type", new Set(state.log.map((r) => r.image_type)), "all types");
    fill("#log-band", new Set(state.log.map((r) => r.filter).filter(Boolean)), "all filters");
    filterLog();
    markCurrentRow();
  }

  function filterLog() {
    const terms = $("#log-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    const type = $("#log-type").value;
    const band = $("#log-band").value;
    let shown = 0;
    const rows = $("#log tbody").rows;
    for (const tr of rows) {
      const text = tr.textContent.toLowerCase();
      const ok =
        (!type || tr.dataset.type === type) &&
        (!band || tr.dataset.filter === band) &&
        terms.every((t) => text.includes(t));
      tr.hidden = !ok;
      if (ok) shown += 1;
    }
    $("#log-count").textContent = `${shown} of ${rows.length}`;
  }

  function markCurrentRow() {
    const id = state.frame ? String(state.frame.exposure_id) : null;
    for (const tr of $("#log tbody").rows) tr.classList.toggle("current", tr.dataset.id === id);
  }

  async function loadLog() {
    state.log = await apiAll(`/api/quicklook/log?night=${encodeURIComponent(state.night || "")}&limit=1000`);
    renderLog();
  }
  const loadLogSoon = debounce(() => loadLog().catch((err) => console.warn(err.message)), 250);

  $("#log-filter").addEventListener("input", filterLog);
  $("#log-type").addEventListener("change", filterLog);
  $("#log-band").addEventListener("change", filterLog);
  $("#log tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (tr) openFrame(Number(tr.dataset.id));
  });

  // Opening a frame by hand stops following the live frames until "follow live" is ticked.
  function openFrame(id) {
    state.follow = false;
    $("#follow").checked = false;
    showFrame(id);
  }

  $("#follow").addEventListener("change", async (ev) => {
    state.follow = ev.target.checked;
    if (state.follow) {
      const latest = await api("/api/quicklook/latest");
      if (latest.exposure_id !== null) showFrame(latest.exposure_id);
    }
  });

  // -- light curves and alerts -----------------------------------------------------------

  // Targets with points: asking for an empty one would answer 404 (a console error).
  function targetNames(list) {
    const items = Array.isArray(list) ? list : list.targets || list.lightcurves || [];
    return items
      .filter((t) => typeof t === "string" || t.n_points === undefined || t.n_points > 0)
      .map((t) => (typeof t === "string" ? t : t.target || t.name))
      .filter(Boolean);
  }

  async function loadLightcurves() {
    const box = $("#lightcurves");
    if (!hasRoute("/api/lightcurves")) {
      box.innerHTML = '<p class="muted">no light curves yet</p>';
      return;
    }
    try {
      const listing = await api("/api/lightcurves");
      const rows = new Map((Array.isArray(listing) ? listing : listing.items || []).map((r) => [r.target, r]));
      const names = targetNames(listing).slice(0, 8);
      const curves = await Promise.all(
        names.map((n) => api(`/api/lightcurve?target=${encodeURIComponent(n)}`).catch(() => null)),
      );
      const withPoints = curves.filter((c) => c && c.points && c.points.length);
      if (!withPoints.length) {
        box.innerHTML = '<p class="muted">no light curves yet</p>';
        return;
      }
      box.innerHTML = withPoints
        .map((c, i) => {
          const row = rows.get(c.target) || {};
          const fold = Number.isFinite(row.period_d) ? `<canvas id="lc-fold-${i}" class="fold"></canvas>` : "";
          return `<div class="plot" data-target="${esc(c.target)}"><div class="title">${esc(c.target)} (${c.points.length})${variableLabel(row)}</div><canvas id="lc-${i}"></canvas>${fold}</div>`;
        })
        .join("");
      withPoints.forEach((c, i) => {
        const points = c.points.map((p) => ({
          x: p.mjd,
          y: p.mag,
          err: p.mag_err,
          color: p.flag ? "#777" : FILTER_COLOURS[p.filter],
        }));
        window.ObsPlot.draw($(`#lc-${i}`), points, { invert: true, yErr: "err" });
        const period = (rows.get(c.target) || {}).period_d;
        if (Number.isFinite(period)) {
          // Two cycles of the fold on the found period, times in BJD where known.
          const t0 = Math.min(...c.points.map((p) => p.mjd));
          const folded = points.flatMap((p, k) => {
            const t = c.points[k].bjd_tdb ? c.points[k].bjd_tdb - 2400000.5 : p.x;
            const phase = (((t - t0) / period) % 1 + 1) % 1;
            return [{ ...p, x: phase }, { ...p, x: phase + 1 }];
          });
          window.ObsPlot.draw($(`#lc-fold-${i}`), folded, {
            invert: true, yErr: "err", connect: false, xFormat: (x) => `phase ${x.toFixed(1)}`,
          });
        }
      });
    } catch (err) {
      box.innerHTML = '<p class="muted">no light curves yet</p>';
      if (!(err instanceof HttpError && err.status === 404)) console.warn(err.message);
    }
  }
  const loadLightcurvesSoon = debounce(loadLightcurves, 1000);

  // The class the light-curve classifier gives, its probability, the period and how it was
  // found, and a flag for a curve unlike every class.
  function variableLabel(row) {
    const parts = [];
    if (row.var_class) parts.push(`<span class="var-class">${esc(row.var_class)} ${Math.round(100 * row.var_class_prob)} %</span>`);
    if (Number.isFinite(row.period_d)) parts.push(`P = ${row.period_d.toFixed(row.period_d < 10 ? 5 : 2)} d${row.period_method ? ` (${esc(row.period_method)})` : ""}`);
    if (Number.isFinite(row.anomaly_score) && row.anomaly_score > 0) parts.push('<span class="anomaly">unusual</span>');
    return parts.length ? ` — ${parts.join(", ")}` : "";
  }

  async function loadAlerts() {
    const box = $("#alerts");
    if (!hasRoute("/api/alerts")) return;
    try {
      const reply = await api("/api/alerts?limit=5"); // newest first
      const items = (Array.isArray(reply) ? reply : reply.alerts || []).slice(0, 5);
      box.innerHTML = items.length
        ? "<h2>alerts</h2><ul>" + items.map((a) => `<li>${esc(a.time || a.created_utc || "")} ${esc(a.target || "")} ${esc(a.message || a.kind || JSON.stringify(a))}</li>`).join("") + "</ul>"
        : "";
    } catch (err) {
      box.innerHTML = "";
    }
  }

  // -- photometric calibration: the night's extinction and colour terms ------------------

  function filterColour(name) {
    return FILTER_COLOURS[name] || classColour(String(name ?? ""));
  }

  function plusMinus(v, err, digits) {
    if (typeof v !== "number" || !Number.isFinite(v)) return "—";
    const e = typeof err === "number" && Number.isFinite(err) ? ` ± ${err.toFixed(digits)}` : "";
    return `${v.toFixed(digits)}${e}`;
  }

  function drawExtinction() {
    const reply = state.extinction || { filters: [], frames: [] };
    const fits = new Map(reply.filters.map((f) => [f.filter, f]));
    const canvas = $("#extinction-plot");
    // Frames off the all-sky line (clouds, outliers) grey; all frames of a filter coloured
    // when there is no line (a differential night).
    const points = reply.frames
      .filter((f) => f.zero_point !== null && f.airmass !== null)
      .map((f) => {
        const allSky = (fits.get(f.filter) || {}).mode === "all-sky";
        return { x: f.airmass, y: f.zero_point, id: f.exposure_id, color: allSky && !f.used ? "#777" : filterColour(f.filter) };
      });
    const lines = reply.filters
      .filter((f) => f.mode === "all-sky" && f.k !== null && f.zp0 !== null && f.airmass_min !== null)
      .map((f) => ({ x0: f.airmass_min, x1: f.airmass_max, y0: f.zp0 - f.k * f.airmass_min, y1: f.zp0 - f.k * f.airmass_max, color: filterColour(f.filter) }));
    canvas._drawn = window.ObsPlot.draw(canvas, points, {
      connect: false,
      lines,
      xFormat: (v) => `X ${v.toFixed(2)}`,
      empty: "no night fit yet",
      highlight: state.frame ? state.frame.exposure_id : undefined,
    });
    canvas.dataset.lines = String(lines.length);
    const residuals = $("#extinction-residuals");
    residuals._drawn = window.ObsPlot.draw(
      residuals,
      reply.frames
        .filter((f) => f.residual !== null)
        .map((f) => ({ x: f.mjd_mid, y: f.residual, id: f.exposure_id, color: f.used ? filterColour(f.filter) : "#777" })),
      { connect: false, lines: [], empty: "no all-sky fit yet", highlight: state.frame ? state.frame.exposure_id : undefined },
    );
    $("#extinction-fits tbody").innerHTML = reply.filters
      .map((f) => {
        // Too few frames yet to judge the sky (no scatter about a line): said so, not "not".
        const sky = f.photometric
          ? '<span class="good">photometric</span>'
          : f.frame_rms === null
            ? '<span class="muted">too few frames to judge</span>'
            : '<span class="bad">not photometric</span>';
        return (
          `<tr data-filter="${esc(f.filter)}" data-mode="${esc(f.mode)}">` +
          `<td><span style="color:${filterColour(f.filter)}">&#9679;</span> ${esc(f.filter)}</td>` +
          `<td>${sky} <span class="muted">(${esc(f.mode)})</span></td>` +
          `<td class="num" data-key="k">${plusMinus(f.k, f.k_err, 3)}</td>` +
          `<td class="num" data-key="colour_term">${plusMinus(f.colour_term, f.colour_term_err, 3)}</td>` +
          `<td class="num" data-key="zp0">${plusMinus(f.zp0, f.zp0_err, 3)}</td>` +
          `<td class="num" data-key="rms">${fixed(f.rms, 3)}</td>` +
          `<td class="num" data-key="frame_rms">${fixed(f.frame_rms, 3)}</td>` +
          // All-sky: the frames on the line of the frames fitted; differential: the frames.
          `<td class="num" data-key="frames">${f.mode === "all-sky" ? `${esc(f.n_frames_used)}/` : ""}${esc(f.n_frames)}</td>` +
          `<td class="num" data-key="stars">${esc(f.n_stars)}</td></tr>`
        );
      })
      .join("");
    $("#extinction-notes").innerHTML = reply.filters
      .filter((f) => f.reason)
      .map((f) => `<li data-filter="${esc(f.filter)}">${esc(f.filter)}: ${esc(f.reason)}</li>`)
      .join("");
  }

  function buildExtinctionPlot() {
    for (const canvas of [$("#extinction-plot"), $("#extinction-residuals")]) {
      canvas.addEventListener("click", (ev) => {
        const rect = canvas.getBoundingClientRect();
        const hit = (canvas._drawn || []).find((d) => Math.hypot(d.X - (ev.clientX - rect.left), d.Y - (ev.clientY - rect.top)) < 6);
        if (hit) openFrame(hit.p.id);
      });
    }
  }

  async function loadExtinction() {
    if (!hasRoute("/api/extinction") || !state.night) {
      state.extinction = null;
    } else {
      const night = state.night;
      const reply = await api(`/api/extinction?night=${encodeURIComponent(night)}`);
      if (night !== state.night) return; // another night was chosen meanwhile
      state.extinction = reply;
    }
    drawExtinction();
  }
  const loadExtinctionSoon = debounce(() => loadExtinction().catch((err) => console.warn(err.message)), 500);

  // -- autofocus: a run's V-curve and the night's runs -----------------------------------

  const OUTCOME_CLASS = { focused: "good", refused: "warn", failed: "bad" };
  const CURVE_SAMPLES = 64;

  // An element with plain-text children: what the database holds (a run's reason may hold
  // anything) is never parsed as HTML.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  }

  function finite(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  // The stored hyperbola, hfr = a sqrt(1 + ((x - c) / b)^2) with a the in-focus HFR, c the
  // best position and b = half-width / sqrt(3) (the HFR doubles at the half-width), sampled
  // from `lo` to `hi`; [] when the run has no fit.
  function focusCurve(run, lo, hi) {
    const a = run.best_hfr_px;
    const c = run.best_position;
    const w = run.half_width_steps;
    if (![a, c, w, lo, hi].every(finite) || a <= 0 || w <= 0) return [];
    const from = Math.min(lo, c);
    const to = Math.max(hi, c);
    const samples = [];
    for (let i = 0; i <= CURVE_SAMPLES; i++) {
      const x = from + ((to - from) * i) / CURVE_SAMPLES;
      samples.push([x, a * Math.sqrt(1 + 3 * ((x - c) / w) ** 2)]);
    }
    return samples;
  }

  function shownRun() {
    const runs = state.focus ? state.focus.runs : [];
    return runs.find((r) => r.id === state.focusRun) || runs[0] || null;
  }

  function utcTime(iso) {
    return typeof iso === "string" ? iso.slice(0, 19).replace("T", " ") : "";
  }

  function drawFocus() {
    const reply = state.focus || { night: null, total: 0, runs: [] };
    const run = shownRun();
    const canvas = $("#focus-plot");
    canvas.dataset.run = run ? String(run.id) : "";
    $("#focus-night").textContent = reply.night ? `night ${reply.night}` : "";
    const points = run
      ? run.points
          .filter((p) => finite(p.position) && finite(p.hfr_px))
          .map((p) => ({ x: p.position, y: p.hfr_px, n: p.n_stars }))
          .sort((p, q) => p.x - q.x)
      : [];
    const lines = [];
    let curve = [];
    if (run && points.length) {
      const xs = points.map((p) => p.x);
      curve = focusCurve(run, Math.min(...xs), Math.max(...xs));
      const colour = run.outcome === "focused" ? "#62c462" : "#8793a0";
      for (let i = 1; i < curve.length; i++) {
        lines.push({ x0: curve[i - 1][0], y0: curve[i - 1][1], x1: curve[i][0], y1: curve[i][1], color: colour });
      }
      const ys = points.map((p) => p.y);
      const low = Math.min(...ys, ...(curve.length ? [run.best_hfr_px] : []));
      const high = Math.max(...ys);
      if (finite(run.best_position)) lines.push({ x0: run.best_position, x1: run.best_position, y0: low, y1: high, color: "#ffffff", dash: [4, 3] });
      if (finite(run.final_position)) lines.push({ x0: run.final_position, x1: run.final_position, y0: low, y1: high, color: "#f0b64a", dash: [2, 3] });
    }
    canvas._drawn = window.ObsPlot.draw(canvas, points, {
      connect: false,
      lines,
      xFormat: (v) => `${Math.round(v)} steps`,
      empty: run ? "no HFR measured in this run" : "no focus run this night",
    });
    canvas._curve = curve;
    canvas.dataset.curve = String(curve.length ? curve.length - 1 : 0);
    renderFocusSummary(run);
    renderFocusRuns(reply);
  }

  function renderFocusSummary(run) {
    const box = $("#focus-summary");
    if (!run) {
      box.replaceChildren();
      return;
    }
    const steps = (v) => (finite(v) ? `${Math.round(v)}` : "—");
    const px = (v) => (finite(v) ? `${v.toFixed(2)} px` : "—");
    const rows = [
      ["outcome", el("span", { class: OUTCOME_CLASS[run.outcome] || "", id: "focus-outcome" }, run.outcome), ` #${run.id}`],
      ["trigger", el("span", { id: "focus-trigger" }, run.trigger)],
      ["filter", el("span", { id: "focus-filter" }, run.filter ?? "—")],
      ["temperature", el("span", { id: "focus-temperature" }, finite(run.temperature_c) ? `${run.temperature_c.toFixed(1)} °C` : "—")],
      ["started (UT)", utcTime(run.started_utc)],
      ["focuser", `${steps(run.start_position)} → ${steps(run.final_position)} steps`],
      ["fit", finite(run.best_position)
        ? `best ${steps(run.best_position)} steps, HFR ${px(run.best_hfr_px)}, half-width ${steps(run.half_width_steps)} steps, rms ${px(run.fit_rms_px)}` +
          (finite(run.parabola_position) ? `, parabola ${steps(run.parabola_position)}` : "")
        : "none"],
      ["frames", `${run.points.filter((p) => finite(p.hfr_px)).length} of ${run.points.length} with an HFR`],
      ["check frame", px(run.check_hfr_px)],
    ];
    if (run.reason) rows.push(["reason", el("span", { id: "focus-reason" }, run.reason)]);
    box.replaceChildren(...rows.flatMap(([k, ...v]) => [el("dt", {}, k), el("dd", {}, ...v)]));
  }

  function renderFocusRuns(reply) {
    const current = shownRun();
    $("#focus-runs tbody").replaceChildren(
      ...reply.runs.map((r) =>
        el(
          "tr",
          { dataset: { id: String(r.id), outcome: String(r.outcome) }, class: current && r.id === current.id ? "current" : "" },
          el("td", { class: "num" }, r.id),
          el("td", {}, utcTime(r.started_utc).slice(11)),
          el("td", { class: "trigger" }, r.trigger),
          el("td", {}, r.filter ?? ""),
          el("td", { class: OUTCOME_CLASS[r.outcome] || "" }, r.outcome),
          el("td", { class: "num" }, finite(r.final_position) ? Math.round(r.final_position) : ""),
          el("td", { class: "num" }, fixed(r.check_hfr_px ?? r.best_hfr_px, 2)),
          el("td", { class: "num" }, fixed(r.temperature_c, 1)),
        ),
      ),
    );
    $("#focus-count").textContent = reply.total > reply.runs.length ? `the latest ${reply.runs.length} of ${reply.total} runs` : "";
  }

  $("#focus-runs tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr");
    if (!tr) return;
    state.focusRun = Number(tr.dataset.id);
    drawFocus();
  });

  // A night's runs (null: the night of the newest run); the newest is drawn unless another
  // was picked in the list and is still there.
  async function loadFocus(night) {
    const token = ++state.focusToken;
    const reply = await api(`/api/quicklook/focus${night ? `?night=${encodeURIComponent(night)}` : ""}`);
    if (token !== state.focusToken) return; // a newer request was made meanwhile
    state.focus = reply;
    drawFocus();
  }
  const loadFocusSoon = debounce((night) => loadFocus(night).catch((err) => console.warn(err.message)), 250);

  // -- difference imaging: candidates, transients, moving objects ------------------------

  // Sizes of one cutout in the PNGs (px): a detection's, a transient's, a moving object's.
  const CUTOUT_PX = { candidate: 63, transient: 84, moving: 42 };

  function cutoutsImage(url, size, id) {
    if (!url) return "";
    return el("img", { class: "cutouts", src: `${url}?size=${size}`, alt: `cutouts of candidate ${id}`, title: "new | reference | difference" });
  }

  function signed(v, digits) {
    return finite(v) ? `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(digits)}` : "—";
  }

  function magText(mag, err) {
    return finite(mag) ? `${mag.toFixed(2)}${finite(err) ? ` ± ${err.toFixed(2)}` : ""} mag` : "no mag";
  }

  function realBogus(v) {
    return finite(v) ? v.toFixed(2) : "—";
  }

  function candidateCard(c) {
    const links = [];
    if (c.transient_id !== null && c.transient_id !== undefined) links.push(`transient #${c.transient_id}`);
    if (c.track_id !== null && c.track_id !== undefined) links.push(`moving object #${c.track_id}`);
    return el(
      "div",
      { class: "candidate", dataset: { id: String(c.id), kind: String(c.kind) } },
      cutoutsImage(c.cutouts, CUTOUT_PX.candidate, c.id),
      el("div", { class: "line" }, el("b", {}, `#${c.id}`), " ", el("span", { class: "field" }, c.field ?? ""), ` · ${utcTime(c.date_obs).slice(11)} UT · ${c.filter ?? ""}`),
      el("div", { class: "line" }, magText(c.mag, c.mag_err), ` · score ${signed(c.score, 1)}σ · real/bogus ${realBogus(c.real_bogus)}`),
      links.length ? el("div", { class: "line label" }, links.join(" · ")) : "",
    );
  }

  function transientCard(t) {
    const host = finite(t.host_offset_arcsec)
      ? `host galaxy ${t.host_offset_arcsec.toFixed(1)}″ away, PA ${finite(t.host_pa_deg) ? t.host_pa_deg.toFixed(0) : "—"}°`
      : "no host galaxy within 15″";
    return el(
      "div",
      { class: "candidate transient", dataset: { id: String(t.id), candidate: String(t.candidate_id ?? "") } },
      cutoutsImage(t.cutouts, CUTOUT_PX.transient, t.candidate_id),
      el("div", { class: "line" }, el("b", {}, `transient #${t.id}`), " ", el("span", { class: "field" }, t.field ?? "")),
      el("div", { class: "line" }, `peak ${magText(t.peak_mag)} · ${t.detections} detection(s) · real/bogus ${realBogus(t.real_bogus)}`),
      el("div", { class: "line host" }, host),
      el("div", { class: "line label" }, `RA ${fixed(t.ra_deg, 5)}° Dec ${signed(t.dec_deg, 5)}°`),
    );
  }

  function movingRow(m) {
    return el(
      "tr",
      { dataset: { id: String(m.id) } },
      el("td", { class: "num" }, m.id),
      el("td", { class: "field" }, m.field ?? ""),
      el("td", { class: "num" }, fixed(m.epoch_mjd, 5)),
      el("td", { class: "num" }, fixed(m.ra_deg, 5)),
      el("td", { class: "num" }, signed(m.dec_deg, 5)),
      el("td", { class: "num rate" }, fixed(m.rate_arcsec_min, 2)),
      el("td", { class: "num pa" }, fixed(m.pa_deg, 0)),
      el("td", { class: "num" }, fixed(m.mag, 2)),
      el("td", { class: "num" }, m.detections),
      el("td", {}, cutoutsImage(m.cutouts, CUTOUT_PX.moving, m.candidate_id)),
    );
  }

  function empty(text) {
    return el("p", { class: "muted empty" }, text);
  }

  function drawCandidates() {
    const reply = state.candidates || { night: null, total: 0, candidates: [], transients: [], moving_objects: [], mpc: null };
    const panel = $("#candidates-panel");
    panel.dataset.night = reply.night || "";
    panel.dataset.count = String(reply.candidates.length);
    $("#candidates-night").textContent = reply.night ? `night ${reply.night}` : "";
    $("#transients").replaceChildren(...(reply.transients.length ? reply.transients.map(transientCard) : [empty("no transient alerted this night")]));
    $("#moving-objects tbody").replaceChildren(...reply.moving_objects.map(movingRow));
    const mpc = $("#mpc-link");
    mpc.hidden = !reply.mpc;
    if (reply.mpc) mpc.setAttribute("href", reply.mpc);
    else mpc.removeAttribute("href");
    $("#candidates").replaceChildren(...(reply.candidates.length ? reply.candidates.map(candidateCard) : [empty("no difference detections this night")]));
    $("#candidates-count").textContent = reply.total > reply.candidates.length ? `the latest ${reply.candidates.length} of ${reply.total}` : reply.total ? `${reply.total}` : "";
  }

  // A night's candidates (null: the latest night with a difference).
  async function loadCandidates(night) {
    const token = ++state.candidatesToken;
    const reply = await api(`/api/quicklook/candidates${night ? `?night=${encodeURIComponent(night)}` : ""}`);
    if (token !== state.candidatesToken) return; // a newer request was made meanwhile
    state.candidates = reply;
    drawCandidates();
  }
  const loadCandidatesSoon = debounce(() => loadCandidates(state.night).catch((err) => console.warn(err.message)), 500);

  // -- live events -----------------------------------------------------------------------

  async function onProcessed(ev) {
    const processedMs = Date.parse(ev.time);
    let info = null;
    if (state.follow && !ev.failed_stage) info = await showFrame(ev.exposure_id, processedMs);
    if (!info) info = await api(`/api/quicklook/frames/${ev.exposure_id}`).catch(() => null);
    if (info && info.exposure.night !== state.night && state.follow) {
      await selectNight(info.exposure.night);
      return;
    }
    if (info) upsertTrend(info);
    loadLogSoon();
    loadLightcurvesSoon();
  }

  function connect() {
    const source = new EventSource("/api/events");
    const pill = $("#connection");
    let opened = false;
    source.onopen = () => {
      pill.textContent = "live";
      pill.className = "pill on";
      // Back after a break (a daemon restart): catch up with what the stream did not say.
      if (opened) catchUp().catch((err) => console.warn(err.message));
      opened = true;
    };
    source.onerror = () => {
      pill.textContent = "reconnecting";
      pill.className = "pill off";
    };
    const on = (kind, fn) => source.addEventListener(kind, (m) => fn(JSON.parse(m.data)));
    on("processed", (ev) => onProcessed(ev).catch((err) => console.warn(err.message)));
    on("frame", (ev) => {
      loadLogSoon();
      if (!state.info.pipeline_enabled && state.follow && ev.image_type === "LIGHT") {
        showFrame(ev.exposure_id, Date.parse(ev.time));
      }
    });
    for (const kind of ["activity", "safety", "transparency", "sequence", "failure", "mount", "downloaded"]) on(kind, refreshStatusSoon);
    on("nightfit", (ev) => {
      if (ev.night === state.night) loadExtinctionSoon();
    });
    // A run of the night shown, or (following live) the first of a new night: drawn at once.
    on("focus", (ev) => {
      const shown = state.focus ? state.focus.night : state.night;
      if (ev.night === shown || !shown || state.follow) {
        state.focusRun = null;
        loadFocusSoon(ev.night);
      }
    });
    for (const kind of ["lightcurve", "alert"]) {
      on(kind, () => {
        loadLightcurvesSoon();
        loadAlerts();
      });
    }
    // A processed frame brings its differences' candidates; an alert a transient or a track.
    for (const kind of ["alert", "processed"]) on(kind, loadCandidatesSoon);
    state.events = source;
  }

  async function catchUp() {
    refreshStatusSoon();
    if (state.night) await Promise.all([loadLog(), loadTrends(), loadExtinction().catch((err) => console.warn(err.message))]);
    await loadFocus(state.focus ? state.focus.night : state.night).catch((err) => console.warn(err.message));
    await loadCandidates(state.night).catch((err) => console.warn(err.message));
    if (state.follow) {
      const latest = await api("/api/quicklook/latest");
      if (latest.exposure_id !== null) await showFrame(latest.exposure_id);
    }
  }

  async function selectNight(night) {
    state.night = night;
    const select = $("#night");
    if (![...select.options].some((o) => o.value === night)) {
      select.insertAdjacentHTML("afterbegin", `<option>${esc(night)}</option>`);
    }
    select.value = night;
    // The fits are extra: the log and trends show even when they cannot be read.
    state.focusRun = null;
    await Promise.all([
      loadLog(),
      loadTrends(),
      loadExtinction().catch((err) => console.warn(err.message)),
      loadFocus(night).catch((err) => console.warn(err.message)),
      loadCandidates(night).catch((err) => console.warn(err.message)),
    ]);
  }

  $("#night").addEventListener("change", (ev) => selectNight(ev.target.value));

  async function start() {
    buildTrendPlots();
    buildExtinctionPlot();
    drawTrends();
    drawExtinction();
    drawFocus();
    drawCandidates();
    state.info = await api("/api/quicklook/info");
    connect();
    refreshStatus();
    const nights = state.info.nights.map((n) => n.night);
    $("#night").innerHTML = nights.map((n) => `<option>${esc(n)}</option>`).join("");
    const latest = await api("/api/quicklook/latest");
    let night = nights[0] || null;
    if (latest.exposure_id !== null) {
      const info = await showFrame(latest.exposure_id);
      if (info) night = info.exposure.night;
    }
    if (night) await selectNight(night);
    else {
      drawTrends();
      // No frame yet, but perhaps a focus run already (the start of a night).
      await loadFocus(null).catch((err) => console.warn(err.message));
      await loadCandidates(null).catch((err) => console.warn(err.message));
    }
    loadLightcurves();
    loadAlerts();
    document.body.dataset.ready = "1";
  }

  start().catch((err) => {
    $("#viewer-empty").textContent = `cannot start: ${err.message}`;
    console.error(err);
  });
})();
