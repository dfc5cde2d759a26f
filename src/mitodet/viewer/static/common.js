"use strict";
// Shared helpers of the viewer's pages (no framework, nothing fetched from outside).
const mitodet = {
  async json(url, opts) {
    const r = await fetch(url, opts);
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  },
  fmt(v, nd = 1) {
    if (v === null || v === undefined || Number.isNaN(v)) return "n/a";
    return typeof v === "number" ? v.toFixed(nd) : String(v);
  },
  el(tag, attrs = {}, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  },
  // score -> colour (a colour-blind-safe ramp from blue, low, to yellow, high)
  scoreColour(s, lo) {
    const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const t = Math.max(0, Math.min(1, (s - lo) / Math.max(1e-6, 1 - lo))) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
    const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  },
};
