// Sky coordinates under the cursor: a FITS celestial WCS (TAN, with SIP distortion when the
// header has it) evaluated in the page, from the keywords the server sends with a frame.
"use strict";

(function () {
  const D2R = Math.PI / 180;

  function num(keys, name, fallback) {
    const v = keys[name];
    return typeof v === "number" ? v : fallback;
  }

  // The linear part: the CD matrix, or PC times CDELT, or CDELT with the old CROTA2.
  function cdMatrix(k) {
    if (["CD1_1", "CD1_2", "CD2_1", "CD2_2"].some((n) => n in k)) {
      return [
        [num(k, "CD1_1", 0), num(k, "CD1_2", 0)],
        [num(k, "CD2_1", 0), num(k, "CD2_2", 0)],
      ];
    }
    const d1 = num(k, "CDELT1", 1);
    const d2 = num(k, "CDELT2", 1);
    if (["PC1_1", "PC1_2", "PC2_1", "PC2_2"].some((n) => n in k)) {
      return [
        [d1 * num(k, "PC1_1", 1), d1 * num(k, "PC1_2", 0)],
        [d2 * num(k, "PC2_1", 0), d2 * num(k, "PC2_2", 1)],
      ];
    }
    const r = num(k, "CROTA2", 0) * D2R;
    return [
      [d1 * Math.cos(r), -d2 * Math.sin(r)],
      [d1 * Math.sin(r), d2 * Math.cos(r)],
    ];
  }

  function sipTerms(k, prefix) {
    const order = num(k, prefix + "_ORDER", 0);
    const terms = [];
    for (let p = 0; p <= order; p++) {
      for (let q = 0; q <= order - p; q++) {
        const c = k[`${prefix}_${p}_${q}`];
        if (typeof c === "number" && c !== 0) terms.push([p, q, c]);
      }
    }
    return terms;
  }

  function poly(terms, u, v) {
    let s = 0;
    for (const [p, q, c] of terms) s += c * Math.pow(u, p) * Math.pow(v, q);
    return s;
  }

  // Returns {pixToSky(x, y) -> [raDeg, decDeg]} for 0-based pixel coordinates, or null when
  // the header has no TAN celestial WCS.
  function fromKeys(k) {
    if (!k) return null;
    const c1 = String(k.CTYPE1 || "");
    const c2 = String(k.CTYPE2 || "");
    if (!c1.startsWith("RA---TAN") || !c2.startsWith("DEC--TAN")) return null;
    const cd = cdMatrix(k);
    const crpix1 = num(k, "CRPIX1", 0);
    const crpix2 = num(k, "CRPIX2", 0);
    const ra0 = num(k, "CRVAL1", 0);
    const dec0 = num(k, "CRVAL2", 0) * D2R;
    const sip = c1.endsWith("-SIP") ? [sipTerms(k, "A"), sipTerms(k, "B")] : null;
    return {
      sip: sip !== null,
      pixToSky(x, y) {
        // FITS pixels are 1-based.
        let u = x + 1 - crpix1;
        let v = y + 1 - crpix2;
        if (sip) {
          const du = poly(sip[0], u, v);
          const dv = poly(sip[1], u, v);
          u += du;
          v += dv;
        }
        const xi = (cd[0][0] * u + cd[0][1] * v) * D2R;
        const eta = (cd[1][0] * u + cd[1][1] * v) * D2R;
        // Gnomonic deprojection about (CRVAL1, CRVAL2) with the default LONPOLE of 180 deg.
        const den = Math.cos(dec0) - eta * Math.sin(dec0);
        let ra = ra0 + Math.atan2(xi, den) / D2R;
        const dec = Math.atan2(Math.sin(dec0) + eta * Math.cos(dec0), Math.hypot(xi, den)) / D2R;
        ra = ((ra % 360) + 360) % 360;
        return [ra, dec];
      },
    };
  }

  function sexagesimal(value, hours) {
    let v = hours ? value / 15 : value;
    const sign = v < 0 ? "-" : hours ? "" : "+";
    v = Math.abs(v);
    let a = Math.floor(v);
    let b = Math.floor((v - a) * 60);
    let c = ((v - a) * 60 - b) * 60;
    const digits = hours ? 2 : 1;
    if (Number(c.toFixed(digits)) >= 60) {
      c = 0;
      b += 1;
    }
    if (b >= 60) {
      b = 0;
      a += 1;
    }
    const pad = (n, w) => String(n).padStart(w, "0");
    return `${sign}${pad(a, 2)}:${pad(b, 2)}:${c.toFixed(digits).padStart(3 + digits, "0")}`;
  }

  window.ObsWcs = { fromKeys, sexagesimal };
})();
