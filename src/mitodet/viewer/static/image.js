"use strict";
// One image: OpenSeadragon over deep-zoom tiles, every candidate as a marker, the threshold
// slider (count, read-out and TP/FP/FN recomputed by the server, the same code as detect),
// layers, the gallery, and the review (saved at once as NAME.reviewed.geojson).
(async () => {
  const name = decodeURIComponent(location.pathname.split("/").pop());
  const api = (p) => `/api/images/${encodeURIComponent(name)}${p}`;
  const $ = (id) => document.getElementById(id);
  const showError = (msg) => { const e = $("error"); e.hidden = false; e.textContent = msg; };

  const info = await mitodet.json(api(""));
  const cands = (await mitodet.json(api("/candidates"))).points; // [x, y, score], by descending score
  const saved = await mitodet.json(api("/review"));
  document.title = `mitodet: ${info.name}`;
  $("title").textContent = `${info.image} (${info.width} × ${info.height} px, ${info.mpp.toFixed(4)} µm/px)`;
  $("reviewed-file").textContent = `${info.name}.reviewed.geojson`;

  // --- review state: per candidate "unreviewed" | "mitosis" | "not_mitosis"; added points
  const state = cands.map(() => "unreviewed");
  let added = []; // {x, y}
  const lo = info.floor === null ? 0 : Math.max(0, Math.floor(info.floor * 1000) / 1000);
  let threshold = info.threshold;
  if (saved.points) {
    const at = new Map(cands.map((c, i) => [`${c[0]},${c[1]}`, i]));
    for (const p of saved.points) {
      const i = at.get(`${p.x},${p.y}`);
      if (p.origin === "model" && i !== undefined) state[i] = p.reviewed ? p.label : "unreviewed";
      else if (p.label === "mitosis") added.push({ x: p.x, y: p.y });
    }
    if (typeof saved.threshold === "number") threshold = saved.threshold;
  }
  let reviewTouched = Boolean(saved.points);

  // --- the viewer
  const viewer = OpenSeadragon({
    id: "osd",
    prefixUrl: "/static/openseadragon/images/",
    tileSources: `/dz/${encodeURIComponent(name)}.dzi`,
    showNavigator: true,
    navigatorPosition: "BOTTOM_RIGHT",
    gestureSettingsMouse: { clickToZoom: false },
    maxZoomPixelRatio: 4,
  });
  viewer.addHandler("open-failed", (e) => showError(`the image cannot be shown: ${e.message}`));
  await new Promise((res) => viewer.addOnceHandler("open", res));
  const item = viewer.world.getItemAt(0);

  const atypicalThr = info.atypical ? info.atypical.threshold : null;
  const atypicalAt = (i) => atypicalThr !== null && cands[i][3] !== null && cands[i][3] >= atypicalThr;
  const shown = (i) => state[i] === "mitosis" || state[i] === "not_mitosis" || cands[i][2] >= threshold;
  let hotEl = null;
  let truth = null; // evaluation from the server at the current threshold
  let selected = -1;

  // --- markers: one canvas over the viewer, redrawn whenever the view changes (thousands of
  // candidates stay fast); window.mitodetView exposes what was drawn, for tests and scripts
  const canvas = mitodet.el("canvas", { class: "marks" });
  viewer.canvas.appendChild(canvas);
  const ctx = canvas.getContext("2d");
  const R = 11; // marker radius, screen px
  let drawn = []; // [{kind, i, x, y}] in viewer-element px, last frame
  const screen = (x, y) => item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
  function ring(x, y, r, colour, width, dash) {
    ctx.beginPath();
    ctx.setLineDash(dash || []);
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.stroke();
  }
  function square(x, y, r, colour) {
    ctx.setLineDash([]);
    ctx.strokeStyle = colour;
    ctx.lineWidth = 3;
    ctx.strokeRect(x - r, y - r, 2 * r, 2 * r);
  }
  function draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = viewer.canvas.clientWidth, h = viewer.canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
      canvas.style.width = `${w}px`; canvas.style.height = `${h}px`;
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    drawn = [];
    if (!$("layer-dets").checked) { document.body.dataset.markers = "0"; return; }
    const byTruth = $("colour-by").value === "truth" && truth;
    const matched = byTruth ? new Set(truth.matched) : null;
    let k = 0; // index among the detections at the threshold, as the server numbers them
    for (let i = 0; i < cands.length; i++) {
      const c = cands[i];
      const at = c[2] >= threshold;
      let colour = mitodet.scoreColour(c[2], lo);
      if (at) { if (byTruth) colour = matched.has(k) ? "#009e73" : "#d55e00"; k += 1; }
      if (!shown(i)) continue;
      const p = screen(c[0], c[1]);
      drawn.push({ kind: "det", i, x: p.x, y: p.y });
      if (p.x < -R || p.y < -R || p.x > w + R || p.y > h + R) continue;
      if (state[i] === "mitosis") ring(p.x, p.y, R + 4, "#009e73", 3);
      if (state[i] === "not_mitosis") ring(p.x, p.y, R + 4, "#d55e00", 3, [4, 3]);
      ring(p.x, p.y, R, colour, 3, state[i] === "not_mitosis" ? [4, 3] : null);
      if (atypicalAt(i)) ring(p.x, p.y, R - 5, "#cc79a7", 3); // called atypical: an inner ring
      if (i === selected) ring(p.x, p.y, R + 8, "#ffffff", 2);
    }
    added.forEach((a, j) => {
      const p = screen(a.x, a.y);
      drawn.push({ kind: "added", i: j, x: p.x, y: p.y });
      square(p.x, p.y, R - 2, "#cc79a7");
    });
    if (byTruth) for (const [x, y] of truth.missed) { const p = screen(x, y); square(p.x, p.y, R - 3, "#0072b2"); }
    document.body.dataset.markers = String(drawn.filter((d) => d.kind === "det").length);
  }
  let drawQueued = false;
  function redraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }
  viewer.addHandler("update-viewport", redraw);
  viewer.addHandler("resize", redraw);
  window.mitodetView = {
    drawn: () => drawn.map((d) => ({ ...d })),
    screen: (i) => { const p = screen(cands[i][0], cands[i][1]); return { x: p.x, y: p.y }; },
    state: () => ({ state: [...state], added: added.map((a) => ({ ...a })), threshold }),
    canvas,
  };

  function styleMarkers() {
    const counts = { yes: state.filter((s) => s === "mitosis").length, no: state.filter((s) => s === "not_mitosis").length };
    $("review-counts").textContent = `${counts.yes} / ${counts.no} / ${added.length}`;
    const byTruth = $("colour-by").value === "truth" && truth;
    $("legend").innerHTML = byTruth
      ? '<span class="sw" style="border-color:#009e73"></span>TP <span class="sw" style="border-color:#d55e00"></span>FP <span class="sw fn"></span>FN (missed)'
      : `<span class="ramp"></span> score ${lo.toFixed(2)} → 1 · <span class="sw yes"></span>confirmed <span class="sw no"></span>rejected <span class="sw added"></span>added${atypicalThr !== null ? ' <span class="sw" style="border-color:#cc79a7"></span>atypical (inner ring)' : ""}`;
    draw();
  }
  // --- threshold and the live read-out (computed by the server, as detect computes it)
  const thr = $("thr");
  thr.min = String(lo);
  thr.max = "1";
  thr.value = String(threshold);
  $("thr-note").textContent = `model's operating threshold ${info.threshold.toFixed(3)}; candidates scored down to ${lo.toFixed(3)} (${info.n_candidates})`;
  let readoutTimer = null;
  let readoutSeq = 0;

  async function updateReadout() {
    const seq = ++readoutSeq;
    const t = threshold;
    let r;
    try {
      r = await mitodet.json(api(`/readout?threshold=${t}`));
    } catch (e) { showError(`read-out: ${e.message}`); return; }
    if (seq !== readoutSeq) return; // a newer request is on its way
    $("count").textContent = String(r.count);
    if (atypicalThr !== null) {
      let n = 0, k = 0, none = 0;
      for (let i = 0; i < cands.length; i++) {
        if (cands[i][2] < t) continue;
        if (cands[i][3] === null) { none += 1; continue; } // below the operating threshold: not classified
        k += 1;
        if (atypicalAt(i)) n += 1;
      }
      $("atypical").textContent = `${n} of ${k} classified (P ≥ ${atypicalThr.toFixed(2)})` + (none ? `; ${none} not classified` : "");
    }
    $("tissue").textContent = `${mitodet.fmt(r.tissue_area_mm2, 3)} mm² (${mitodet.fmt(r.tissue_area_mm2 / r.field_area_mm2)} HPF)`;
    $("per-mm2").textContent = mitodet.fmt(r.count_per_mm2, 2);
    $("per10").textContent = mitodet.fmt(r.count_per_10hpf);
    const h = r.hotspot;
    $("hotspot").textContent = h ? `${h.count} in ${h.n_fields} HPF: ${mitodet.fmt(h.count_per_10hpf)} per 10 HPF${h.extrapolated ? " (extrapolated)" : ""}` : "n/a";
    const n = r.nottingham || {};
    $("score").textContent = n.score === null || n.score === undefined ? `n/a${n.error ? ": " + n.error : ""}` : String(n.score);
    const c = n.cutoffs;
    $("rule").textContent = c ? `Nottingham, mitoses per 10 HPF of ${mitodet.fmt(n.field_area_mm2, 3)} mm² in the hotspot: score 1 ${c.score_1}, 2 ${c.score_2}, 3 ${c.score_3} (source: hover)` : "";
    $("rule").title = n.table_source || "";
    if (hotEl) { viewer.removeOverlay(hotEl); hotEl = null; }
    if (h && h.box_px) {
      const [x0, y0, x1, y1] = h.box_px;
      hotEl = mitodet.el("div", { class: "hot" });
      hotEl.appendChild(mitodet.el("span", {}, `hotspot: ${h.count}`));
      viewer.addOverlay({ element: hotEl, location: item.imageToViewportRectangle(x0, y0, x1 - x0, y1 - y0) });
      hotEl.classList.toggle("hidden", !$("layer-hotspot").checked);
    }
    truth = r.evaluation || null;
    if (truth) {
      $("truth").hidden = false;
      $("colour-by-wrap").hidden = false;
      $("tpfpfn").textContent = `${truth.tp} / ${truth.fp} / ${truth.fn}`;
      $("prf").textContent = `${truth.precision.toFixed(3)} / ${truth.recall.toFixed(3)} / ${truth.f1.toFixed(3)}`;
    }
    styleMarkers();
    document.body.dataset.readoutThreshold = String(t);
    document.body.dataset.readoutCount = String(r.count);
  }

  thr.addEventListener("input", () => {
    threshold = Number(thr.value);
    $("thr-value").textContent = threshold.toFixed(3);
    styleMarkers();
    buildGallery();
    clearTimeout(readoutTimer);
    readoutTimer = setTimeout(updateReadout, 120);
  });
  thr.addEventListener("change", () => { if (reviewTouched) scheduleSave(); });
  $("thr-value").textContent = threshold.toFixed(3);

  // --- layers
  function simpleLayer(url) {
    return new Promise((res) => viewer.addSimpleImage({ url, x: 0, y: 0, width: 1, opacity: 0, success: (e) => res(e.item) }));
  }
  const layers = {};
  async function toggleLayer(kind, on) {
    if (!info.layers[kind]) return;
    if (!layers[kind]) layers[kind] = await simpleLayer(api(`/layer/${kind}`));
    layers[kind].setOpacity(on ? (kind === "tissue" ? 1 : 0.7) : 0);
  }
  for (const kind of ["tissue", "heatmap"]) {
    const box = $(`layer-${kind}`);
    if (!info.layers[kind]) { box.disabled = true; box.parentElement.title = `no ${kind} layer in this output`; }
    box.addEventListener("change", () => toggleLayer(kind, box.checked));
  }
  $("layer-dets").addEventListener("change", styleMarkers);
  $("colour-by").addEventListener("change", styleMarkers);
  $("layer-hotspot").addEventListener("change", () => { if (hotEl) hotEl.classList.toggle("hidden", !$("layer-hotspot").checked); });

  // --- saving: the whole review, at once, one request at a time
  let saving = false, pending = false;
  function reviewPoints() {
    const pts = [];
    cands.forEach((c, i) => {
      const s = state[i];
      if (s === "mitosis" || s === "not_mitosis") pts.push({ x: c[0], y: c[1], label: s, origin: "model", score: c[2], reviewed: true });
      else if (c[2] >= threshold) pts.push({ x: c[0], y: c[1], label: "mitosis", origin: "model", score: c[2], reviewed: false });
    });
    for (const p of added) pts.push({ x: p.x, y: p.y, label: "mitosis", origin: "added", score: null, reviewed: true });
    return pts;
  }
  async function save() {
    if (saving) { pending = true; return; }
    saving = true;
    try {
      const r = await mitodet.json(api("/review"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ threshold, points: reviewPoints() }),
      });
      $("status").textContent = `saved ${r.file} at ${new Date().toLocaleTimeString()} (${r.n_mitoses} mitoses, ${r.n_not_mitoses} rejected)`;
      document.body.dataset.saved = String(Number(document.body.dataset.saved || 0) + 1);
      const rr = await mitodet.json(api("/readout?source=reviewed"));
      const n = rr.nottingham || {};
      $("review-readout").textContent = `${rr.count} mitoses, hotspot ${mitodet.fmt(rr.hotspot && rr.hotspot.count_per_10hpf)} per 10 HPF, score ${n.score ?? "n/a"}`;
    } catch (e) {
      showError(`NOT saved: ${e.message}`);
    } finally {
      saving = false;
      if (pending) { pending = false; save(); }
    }
  }
  function scheduleSave() { reviewTouched = true; save(); }
  if (saved.points) {
    $("status").textContent = `review loaded (saved ${saved.saved || "by another tool"})`;
    mitodet.json(api("/readout?source=reviewed")).then((rr) => {
      const n = rr.nottingham || {};
      $("review-readout").textContent = `${rr.count} mitoses, hotspot ${mitodet.fmt(rr.hotspot && rr.hotspot.count_per_10hpf)} per 10 HPF, score ${n.score ?? "n/a"}`;
    }).catch(() => {});
  }

  const NEXT = { unreviewed: "mitosis", mitosis: "not_mitosis", not_mitosis: "unreviewed" };
  function mark(i, label) {
    state[i] = label;
    styleMarkers();
    updateTile(i);
    scheduleSave();
  }

  // --- clicks on the tissue: the nearest marker within 14 screen px, else add (shift / add mode)
  viewer.addHandler("canvas-click", (e) => {
    if (!e.quick) return;
    e.preventDefaultAction = true;
    const px = e.position;
    let best = null, bestD = R + 3;
    for (const d of drawn) {
      const dist = Math.hypot(d.x - px.x, d.y - px.y);
      if (dist < bestD) { bestD = dist; best = d; }
    }
    if (best && best.kind === "added") { added.splice(best.i, 1); styleMarkers(); scheduleSave(); return; }
    if (best) { select(best.i, false); mark(best.i, NEXT[state[best.i]]); return; }
    if ($("add-mode").checked || (e.originalEvent && e.originalEvent.shiftKey)) {
      const ip = item.viewerElementToImageCoordinates(px);
      if (ip.x < 0 || ip.y < 0 || ip.x > info.width - 1 || ip.y > info.height - 1) return;
      added.push({ x: Math.round(ip.x * 10) / 10, y: Math.round(ip.y * 10) / 10 });
      styleMarkers();
      scheduleSave();
    }
  });

  // --- the gallery: crops of the shown detections, by score
  const gallery = $("gallery");
  let order = [];
  function tileLabel(i) {
    return { unreviewed: "", mitosis: "mitosis", not_mitosis: "not mitosis" }[state[i]];
  }
  function updateTile(i) {
    const t = gallery.querySelector(`[data-i="${i}"]`);
    if (!t) return;
    t.classList.toggle("yes", state[i] === "mitosis");
    t.classList.toggle("no", state[i] === "not_mitosis");
    t.querySelector(".lab").textContent = tileLabel(i);
  }
  function buildGallery() {
    order = cands.map((_, i) => i).filter(shown);
    const keep = new Set(order);
    for (const t of [...gallery.children]) if (!keep.has(Number(t.dataset.i))) t.remove();
    const have = new Set([...gallery.children].map((t) => Number(t.dataset.i)));
    let prev = null;
    for (const i of order) {
      let t = have.has(i) ? gallery.querySelector(`[data-i="${i}"]`) : null;
      if (!t) {
        t = mitodet.el("figure", { class: "tile", "data-i": String(i) });
        const img = mitodet.el("img", { loading: "lazy", alt: `candidate ${i}`, src: api(`/crop/${i}.jpg`) });
        t.appendChild(img);
        const cap = mitodet.el("figcaption");
        cap.appendChild(mitodet.el("span", { class: "sc" }, cands[i][2].toFixed(3)));
        if (cands[i][3] !== null && cands[i][3] !== undefined) {
          const a = mitodet.el("span", { class: atypicalAt(i) ? "at yes" : "at", title: "P(atypical)" }, `A ${cands[i][3].toFixed(2)}`);
          cap.appendChild(a);
        }
        cap.appendChild(mitodet.el("span", { class: "lab" }, tileLabel(i)));
        t.appendChild(cap);
        t.addEventListener("click", () => select(i, true));
        updateTile(i);
      }
      if (prev === null ? gallery.firstChild !== t : prev.nextSibling !== t) gallery.insertBefore(t, prev === null ? gallery.firstChild : prev.nextSibling);
      prev = t;
    }
    document.body.dataset.gallery = String(order.length);
  }
  function select(i, pan) {
    selected = i;
    for (const t of gallery.querySelectorAll(".tile.sel")) t.classList.remove("sel");
    const t = gallery.querySelector(`[data-i="${i}"]`);
    if (t) { t.classList.add("sel"); t.scrollIntoView({ block: "nearest", inline: "nearest" }); }
    styleMarkers();
    if (pan) viewer.viewport.panTo(item.imageToViewportCoordinates(cands[i][0], cands[i][1]));
  }
  function zoomTo(i) {
    const half = info.crop_um / info.mpp * 2;
    viewer.viewport.fitBounds(item.imageToViewportRectangle(cands[i][0] - half, cands[i][1] - half, 2 * half, 2 * half));
  }
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "checkbox") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const pos = order.indexOf(selected);
    const k = e.key;
    if (k === "ArrowRight" || k === "j") { select(order[Math.min(order.length - 1, pos + 1)] ?? order[0], true); e.preventDefault(); }
    else if (k === "ArrowLeft" || k === "k") { select(order[Math.max(0, pos - 1)] ?? order[0], true); e.preventDefault(); }
    else if ((k === "m" || k === "1") && selected >= 0) mark(selected, "mitosis");
    else if ((k === "n" || k === "0") && selected >= 0) mark(selected, "not_mitosis");
    else if (k === "u" && selected >= 0) mark(selected, "unreviewed");
    else if ((k === "Enter" || k === "z") && selected >= 0) zoomTo(selected);
    else if (k === "a") $("add-mode").checked = !$("add-mode").checked;
    else if (k === "t" && info.layers.tissue) { $("layer-tissue").checked = !$("layer-tissue").checked; toggleLayer("tissue", $("layer-tissue").checked); }
    else if (k === "h" && info.layers.heatmap) { $("layer-heatmap").checked = !$("layer-heatmap").checked; toggleLayer("heatmap", $("layer-heatmap").checked); }
  });

  $("write-readout").addEventListener("click", async () => {
    try {
      const r = await mitodet.json("/api/readout", { method: "POST" });
      $("write-result").textContent = `written to ${r.folder}: ${r.images_reviewed} reviewed image(s), ${r.cases} case(s)`;
    } catch (e) { showError(`read-out not written: ${e.message}`); }
  });

  styleMarkers();
  buildGallery();
  await updateReadout();
  document.body.dataset.ready = "1";
})().catch((e) => {
  const el = document.getElementById("error");
  el.hidden = false;
  el.textContent = String(e);
});
