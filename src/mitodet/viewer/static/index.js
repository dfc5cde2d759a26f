"use strict";
(async () => {
  const cat = await mitodet.json("/api/catalog");
  document.getElementById("folder").textContent = cat.out_dir;
  const cases = document.querySelector("#cases tbody");
  for (const c of cat.cases) {
    const tr = document.createElement("tr");
    const score = c.score === null ? "–" : String(c.score) + (c.score_status === "extrapolated" ? " (extrapolated)" : "");
    const cells = [c.case, c.images.length, c.count, mitodet.fmt(c.hpf_equivalents), mitodet.fmt(c.count_per_10hpf),
      score, c.score_status + (c.reason ? `: ${c.reason}` : ""), c.source === "reviewed" ? `reviewed (${c.n_reviewed})` : "model"];
    for (const v of cells) tr.appendChild(mitodet.el("td", {}, String(v)));
    cases.appendChild(tr);
  }
  if (!cat.cases.length) cases.appendChild(mitodet.el("tr")).appendChild(mitodet.el("td", { colspan: 8 }, "no case files"));
  const images = document.querySelector("#images tbody");
  for (const im of cat.images) {
    const tr = document.createElement("tr");
    const a = mitodet.el("a", { href: `/image/${encodeURIComponent(im.name)}` }, im.name);
    const td = document.createElement("td"); td.appendChild(a); tr.appendChild(td);
    for (const v of [im.kind, im.count, mitodet.fmt(im.tissue_area_mm2, 3), mitodet.fmt(im.hotspot_count_per_10hpf),
      im.score === null ? "–" : im.score, mitodet.fmt(im.threshold, 3), im.f1 === null ? "–" : mitodet.fmt(im.f1, 3),
      im.reviewed ? "yes" : "no"]) tr.appendChild(mitodet.el("td", {}, String(v)));
    images.appendChild(tr);
  }
  document.body.dataset.ready = "1";
})().catch((e) => { document.body.appendChild(mitodet.el("p", { class: "error" }, String(e))); });
