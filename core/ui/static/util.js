/* pipetrace viewer — shared helpers: DOM building, formatting, colours, data access. */
"use strict";
(function () {
  const PT = (window.PT = window.PT || {});
  PT.boot = JSON.parse(document.getElementById("pt-boot").textContent || "{}");
  PT.isReport = PT.boot.mode === "report";

  /* Colours: one per system, one per result; the same everywhere (waterfall, flame graph, lists). */
  PT.SYSTEM_COLORS = {
    airflow: "#1f77d0", dagster: "#7a5af5", prefect: "#0f9fae", celery: "#3d9a4b",
    kombu: "#c98a12", python: "#5f6b7d",
  };
  PT.STATUS_COLORS = {
    success: "#1f9d60", failure: "#dc3d43", error: "#dc3d43", timeout: "#dc3d43", running: "#3a7bea",
    retry: "#e89a0c", skip: "#98a2b3", skipped: "#98a2b3", upstream_failed: "#b46a6d",
    cancellation: "#98a2b3", unknown: "#98a2b3",
  };
  PT.systemColor = (sys) => PT.SYSTEM_COLORS[sys] || "#8792a2";
  PT.statusColor = (st) => PT.STATUS_COLORS[st] || "#8792a2";
  /* The system's hue with a lightness that varies by name, so neighbouring flame frames differ. */
  PT.shade = function (hex, name) {
    let h = 0;
    for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) | 0;
    const k = ((Math.abs(h) % 7) - 3) * 0.07;
    const n = parseInt(hex.slice(1), 16);
    const mix = (c) => Math.round(k > 0 ? c + (255 - c) * k : c * (1 + k));
    const rgb = [(n >> 16) & 255, (n >> 8) & 255, n & 255].map(mix);
    return "#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join("");
  };
  PT.FAILED = new Set(["failure", "error", "timeout"]);

  /* el("div", {class: "x", text: "y", onclick: f, title: "t", dataset: {a: 1}, style: {...}}, ...children)
     Data is only ever set as text, never parsed as HTML. */
  PT.el = function (tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
                     : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") svg ? node.setAttribute("class", v) : (node.className = v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "style") {
        for (const [sk, sv] of Object.entries(v)) {
          if (sk.startsWith("--")) node.style.setProperty(sk, sv); else node.style[sk] = sv;
        }
      }
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  };
  PT.clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); return node; };

  /* Durations a person reads at a glance: µs, ms, s, min, h. */
  PT.fmtDur = function (ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "–";
    if (ms < 0) ms = 0;
    if (ms < 1) return Math.round(ms * 1000) + " µs";
    if (ms < 1000) return (ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)) + " ms";
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(2) : s.toFixed(1)) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.round(s - m * 60) + " s";
    const h = Math.floor(m / 60);
    return h + " h " + (m % 60) + " min";
  };
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  /* Times in the viewer's local zone; UTC on hover (title). */
  PT.fmtLocal = function (epochMs, withMs) {
    const d = new Date(epochMs);
    const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? base + "." + pad(d.getMilliseconds(), 3) : base;
  };
  PT.fmtUTC = (epochMs) => new Date(epochMs).toISOString().replace("T", " ").replace("Z", " UTC");
  PT.timeEl = (epochMs, withMs) =>
    PT.el("time", {text: PT.fmtLocal(epochMs, withMs), title: PT.fmtUTC(epochMs),
                   datetime: new Date(epochMs).toISOString()});
  PT.ago = function (epochMs) {
    const s = (Date.now() - epochMs) / 1000;
    if (s < 60) return Math.max(0, Math.round(s)) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  };

  PT.chip = (sys) => PT.el("span", {class: "chip", style: {"--c": PT.systemColor(sys)}, text: sys || "?"});
  PT.badge = (st) => PT.el("span", {class: "badge st-" + (st || "unknown"), style: {"--c": PT.statusColor(st)},
                                     text: st || "unknown"});

  /* The result of one span: explicit result attribute, else its status. */
  PT.spanResult = function (sp) {
    const a = sp.attrs || {};
    const r = a["cicd.pipeline.task.run.result"] || a["cicd.pipeline.result"];
    if (r) return String(r);
    if (sp.status === "ERROR") return "failure";
    return null;
  };
  /* Row label: the span name plus what tells attempts and mapped instances apart. */
  PT.spanLabel = function (sp) {
    const mi = (sp.attrs || {})["pipetrace.task.map_index"] ?? (sp.attrs || {})["pipetrace.task.map_key"];
    const bi = (sp.attrs || {})["pipetrace.batch.index"];
    return sp.name + (mi !== undefined ? ` [${mi}]` : bi !== undefined ? ` #${bi}` : "");
  };
  PT.isError = (sp) => sp.status === "ERROR" || PT.FAILED.has(PT.spanResult(sp));
  PT.tryNumber = (sp) => Number((sp.attrs || {})["pipetrace.task.try_number"] || 1);
  PT.isRetry = (sp) => PT.tryNumber(sp) > 1 || PT.spanResult(sp) === "retry";

  /* Data access: the live server's API, or the data embedded in a report. */
  PT.api = async function (path) {
    const res = await fetch(path, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error || msg; } catch (e) { /* not JSON */ }
      const err = new Error(msg); err.status = res.status; throw err;
    }
    return res.json();
  };

  PT.download = function (filename, value) {
    const blob = new Blob([typeof value === "string" ? value : JSON.stringify(value, null, 2)],
                          {type: "application/json"});
    const url = URL.createObjectURL(blob);
    const a = PT.el("a", {href: url, download: filename, style: {display: "none"}});
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 1000);
  };

  /* One shared tooltip (rows: [label, value] pairs or strings). */
  const tip = () => document.getElementById("tooltip");
  PT.showTip = function (evt, title, rows) {
    const t = tip();
    PT.clear(t);
    t.appendChild(PT.el("div", {class: "tt-title", text: title}));
    for (const r of rows || []) {
      t.appendChild(Array.isArray(r) ? PT.el("div", {class: "tt-row"}, PT.el("span", {text: r[0]}),
                                                      PT.el("b", {text: r[1]}))
                                      : PT.el("div", {class: "tt-row", text: r}));
    }
    t.hidden = false;
    const w = t.offsetWidth, h = t.offsetHeight;
    let x = evt.clientX + 14, y = evt.clientY + 14;
    if (x + w > window.innerWidth - 8) x = evt.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = evt.clientY - h - 14;
    t.style.left = Math.max(4, x) + "px";
    t.style.top = Math.max(4, y) + "px";
  };
  PT.hideTip = () => { tip().hidden = true; };

  /* Nice axis steps (1, 2, 5 × 10^n ms) for a span of ``range`` ms over ``px`` pixels. */
  PT.niceStep = function (range, px, minPx) {
    const target = range / Math.max(1, px / (minPx || 90));
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(target, 1e-6))));
    for (const m of [1, 2, 5, 10]) if (m * p >= target) return m * p;
    return 10 * p;
  };

  PT.percentile = function (sorted, q) {
    if (!sorted.length) return 0;
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  };
})();
