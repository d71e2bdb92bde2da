// Small scatter-and-line plots on a canvas: enough for a night's trends and light curves,
// without a charting library.
"use strict";

(function () {
  // `step`: the spacing between the labels shown together, so that they differ.
  function fmtNum(v, step) {
    if (step > 0 && Number.isFinite(step)) {
      const digits = Math.min(6, Math.max(0, Math.ceil(-Math.log10(step)) + 1));
      if (Math.abs(v) < 1e5) return v.toFixed(digits);
    }
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-2)) return v.toExponential(1);
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  function fmtMjdTime(mjd) {
    const frac = mjd - Math.floor(mjd);
    const minutes = Math.round(frac * 1440) % 1440;
    return `${String(Math.floor(minutes / 60)).padStart(2, "0")}:${String(minutes % 60).padStart(2, "0")}`;
  }

  // points: [{x, y, id}] (x in MJD unless opts.xFormat says otherwise). opts: color, invert
  // (brighter magnitudes up), highlight (id drawn ringed), yErr (key of an error bar), empty
  // (text when there are no points), connect (false: no line through the points), lines
  // ([{x0, y0, x1, y1, color, dash}]: straight lines drawn under the points, e.g. fits;
  // `dash` a canvas line-dash pattern such as [4, 3]).
  // Returns the drawn points in canvas pixels for hit tests.
  function draw(canvas, points, opts = {}) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, Math.round(canvas.clientWidth * dpr));
    const h = Math.max(40, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    const cw = w / dpr;
    const ch = h / dpr;
    g.clearRect(0, 0, cw, ch);
    g.font = "10px system-ui, sans-serif";
    const pts = points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    canvas.dataset.points = String(pts.length);
    if (pts.length === 0) {
      g.fillStyle = "#8793a0";
      g.fillText(opts.empty || "no data yet", 8, ch / 2);
      return [];
    }
    const left = 44;
    const right = 8;
    const top = 6;
    const bottom = 16;
    const lines = (opts.lines || []).filter((l) => [l.x0, l.y0, l.x1, l.y1].every(Number.isFinite));
    let x0 = Math.min(...pts.map((p) => p.x), ...lines.flatMap((l) => [l.x0, l.x1]));
    let x1 = Math.max(...pts.map((p) => p.x), ...lines.flatMap((l) => [l.x0, l.x1]));
    let y0 = Math.min(...pts.map((p) => p.y - (opts.yErr ? p[opts.yErr] || 0 : 0)), ...lines.flatMap((l) => [l.y0, l.y1]));
    let y1 = Math.max(...pts.map((p) => p.y + (opts.yErr ? p[opts.yErr] || 0 : 0)), ...lines.flatMap((l) => [l.y0, l.y1]));
    if (x1 === x0) {
      x0 -= 0.01;
      x1 += 0.01;
    }
    if (y1 === y0) {
      const pad = Math.abs(y0) * 0.05 || 1;
      y0 -= pad;
      y1 += pad;
    } else {
      const pad = (y1 - y0) * 0.08;
      y0 -= pad;
      y1 += pad;
    }
    const px = (x) => left + ((x - x0) / (x1 - x0)) * (cw - left - right);
    const py = (y) => {
      const t = (y - y0) / (y1 - y0);
      return opts.invert ? top + t * (ch - top - bottom) : ch - bottom - t * (ch - top - bottom);
    };
    g.strokeStyle = "#2a333c";
    g.fillStyle = "#8793a0";
    g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = y0 + ((y1 - y0) * i) / 2;
      const yy = Math.round(py(y)) + 0.5;
      g.beginPath();
      g.moveTo(left, yy);
      g.lineTo(cw - right, yy);
      g.stroke();
      g.fillText(fmtNum(y, (y1 - y0) / 2), 2, Math.min(ch - bottom, Math.max(top + 8, yy + 3)));
    }
    const fmtX = opts.xFormat || fmtMjdTime;
    g.fillText(fmtX(x0), left, ch - 3);
    const last = fmtX(x1);
    g.fillText(last, cw - right - g.measureText(last).width, ch - 3);
    const color = opts.color || "#5cb8ff";
    g.strokeStyle = color;
    g.globalAlpha = 0.5;
    if (opts.connect !== false) {
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(px(p.x), py(p.y)) : g.moveTo(px(p.x), py(p.y))));
      g.stroke();
    }
    g.globalAlpha = 0.8;
    g.lineWidth = 1.5;
    for (const l of lines) {
      g.strokeStyle = l.color || color;
      g.setLineDash(l.dash || []);
      g.beginPath();
      g.moveTo(px(l.x0), py(l.y0));
      g.lineTo(px(l.x1), py(l.y1));
      g.stroke();
    }
    g.setLineDash([]);
    g.lineWidth = 1;
    g.globalAlpha = 1;
    const drawn = [];
    for (const p of pts) {
      const X = px(p.x);
      const Y = py(p.y);
      if (opts.yErr && p[opts.yErr]) {
        g.strokeStyle = color;
        g.beginPath();
        g.moveTo(X, py(p.y - p[opts.yErr]));
        g.lineTo(X, py(p.y + p[opts.yErr]));
        g.stroke();
      }
      g.fillStyle = p.color || color;
      g.beginPath();
      g.arc(X, Y, 2.5, 0, 2 * Math.PI);
      g.fill();
      if (opts.highlight !== undefined && p.id === opts.highlight) {
        g.strokeStyle = "#ffffff";
        g.beginPath();
        g.arc(X, Y, 5, 0, 2 * Math.PI);
        g.stroke();
      }
      drawn.push({ X, Y, p });
    }
    return drawn;
  }

  window.ObsPlot = { draw, fmtNum, fmtMjdTime };
})();
