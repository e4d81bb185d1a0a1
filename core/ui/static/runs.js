/* pipetrace viewer — runs list: filters, sortable table, a duration sparkline per pipeline, live refresh. */
"use strict";
(function () {
  const PT = window.PT;
  const RANGES = [["", "any time"], ["3600", "last hour"], ["86400", "last 24 h"], ["604800", "last 7 days"],
                  ["2592000", "last 30 days"]];
  const STATUSES = ["", "success", "failure", "running", "skip", "timeout", "cancellation"];
  const COLUMNS = [
    ["start", "Started"], ["system", "System"], ["pipeline", "Pipeline"], ["run_id", "Run id"],
    ["status", "Status"], ["duration_ms", "Duration"], ["span_count", "Spans"],
  ];

  PT.RunsView = function (host) {
    const el = PT.el;
    this.state = PT.runsState || (PT.runsState = {system: "", pipeline: "", status: "", range: "", min: "", max: "",
                                                  sort: "start", desc: true, live: true});
    const s = this.state;
    const input = (key, attrs) => {
      const node = el("input", Object.assign({value: s[key]}, attrs));
      node.addEventListener("input", () => { s[key] = node.value; this.refreshSoon(); });
      return node;
    };
    const select = (key, options, name) => {
      const node = el("select", {name, "aria-label": name}, ...options.map(([v, t]) => el("option", {value: v, text: t})));
      node.value = s[key];
      node.addEventListener("change", () => { s[key] = node.value; this.refresh(); });
      return node;
    };
    this.systemSelect = select("system", [["", "all systems"]], "system");
    const live = el("input", {type: "checkbox", name: "live"});
    live.checked = s.live;
    live.addEventListener("change", () => { s.live = live.checked; this.arm(); });
    this.count = el("span", {class: "muted"});
    this.updated = el("span", {class: "muted small"});
    const filters = el("div", {class: "filters"},
      this.systemSelect,
      input("pipeline", {type: "search", name: "pipeline", placeholder: "pipeline (text or glob)", "aria-label": "pipeline"}),
      select("status", STATUSES.map((v) => [v, v || "any status"]), "status"),
      select("range", RANGES, "range"),
      el("label", {class: "dur"}, "duration ≥", input("min", {type: "number", name: "min", min: 0, step: "any", placeholder: "s"}), "s"),
      el("label", {class: "dur"}, "≤", input("max", {type: "number", name: "max", min: 0, step: "any", placeholder: "s"}), "s"),
      el("label", {class: "live"}, live, " live"),
      el("span", {class: "spacer"}), this.count, this.updated);
    this.sparks = el("div", {class: "sparks"});
    this.thead = el("thead");
    this.tbody = el("tbody");
    this.table = el("table", {class: "runs"}, this.thead, this.tbody);
    this.root = el("div", {class: "runs-view"}, filters,
      el("h2", {class: "section", text: "Pipelines"}), this.sparks,
      el("h2", {class: "section", text: "Runs"}), el("div", {class: "table-wrap"}, this.table));
    host.appendChild(this.root);
    this.renderHead();
    this.refresh();
    this.arm();
  };
  const R = PT.RunsView.prototype;

  R.destroy = function () { clearInterval(this.timer); clearTimeout(this.soon); this.dead = true; };
  R.arm = function () {
    clearInterval(this.timer);
    if (this.state.live) this.timer = setInterval(() => this.refresh(), 3000);
  };
  R.refreshSoon = function () { clearTimeout(this.soon); this.soon = setTimeout(() => this.refresh(), 250); };

  R.query = function () {
    const s = this.state, q = new URLSearchParams();
    if (s.system) q.set("system", s.system);
    if (s.pipeline) q.set("pipeline", s.pipeline);
    if (s.status) q.set("status", s.status);
    if (s.range) q.set("since", String(Date.now() / 1000 - Number(s.range)));
    if (s.min !== "" && !isNaN(Number(s.min))) q.set("min_ms", String(Number(s.min) * 1000));
    if (s.max !== "" && !isNaN(Number(s.max))) q.set("max_ms", String(Number(s.max) * 1000));
    return q.toString();
  };

  R.refresh = async function () {
    if (this.busy) { this.again = true; return; }
    this.busy = true;
    try {
      const doc = await PT.api("/api/runs?" + this.query());
      if (this.dead) return;
      this.doc = doc;
      this.render();
      this.updated.textContent = " · updated " + PT.fmtLocal(Date.now()).slice(11);
    } catch (e) {
      if (!this.dead) this.updated.textContent = " · refresh failed: " + e.message;
    } finally {
      this.busy = false;
      if (this.again) { this.again = false; this.refresh(); }
    }
  };

  R.renderHead = function () {
    const el = PT.el, s = this.state;
    PT.clear(this.thead).appendChild(el("tr", {}, ...COLUMNS.map(([key, label]) =>
      el("th", {class: "sortable" + (s.sort === key ? " sorted" : ""), dataset: {sort: key}, onclick: () => {
        if (s.sort === key) s.desc = !s.desc; else { s.sort = key; s.desc = key === "start" || key === "duration_ms"; }
        this.renderHead();
        this.render();
      }}, label, s.sort === key ? (s.desc ? " ▼" : " ▲") : ""))));
  };

  R.render = function () {
    const el = PT.el, doc = this.doc, s = this.state;
    if (!doc) return;
    const known = new Set(Array.from(this.systemSelect.options).map((o) => o.value));
    for (const sys of doc.systems || []) if (!known.has(sys)) this.systemSelect.appendChild(el("option", {value: sys, text: sys}));
    const runs = doc.runs.slice();
    const key = s.sort, dir = s.desc ? -1 : 1;
    runs.sort((a, b) => {
      const x = a[key], y = b[key];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * dir;
    });
    this.count.textContent = `${runs.length} run${runs.length === 1 ? "" : "s"}`;
    const frag = document.createDocumentFragment();
    for (const r of runs) {
      const href = "#/run/" + r.trace_id;
      frag.appendChild(el("tr", {class: "run-row" + (r.in_progress ? " in-progress" : ""), dataset: {trace: r.trace_id},
                                 onclick: (e) => { if (!(e.target instanceof HTMLAnchorElement)) location.hash = href; }},
        el("td", {}, PT.timeEl(r.start * 1000), el("div", {class: "muted small", text: PT.ago(r.start * 1000)})),
        el("td", {}, PT.chip(r.system), ...(r.systems || []).filter((x) => x !== r.system).map(PT.chip)),
        el("td", {}, el("a", {href, class: "pipeline", text: r.pipeline || "(unknown pipeline)"})),
        el("td", {class: "mono", text: r.run_id || "–", title: "trace " + r.trace_id}),
        el("td", {}, PT.badge(r.status)),
        el("td", {class: "num", text: PT.fmtDur(r.duration_ms)}),
        el("td", {class: "num", text: String(r.span_count)})));
    }
    if (!runs.length) frag.appendChild(el("tr", {}, el("td", {colspan: COLUMNS.length, class: "empty",
      text: "No runs match. Record some with `pipetrace demo`, or clear the filters."})));
    PT.clear(this.tbody).appendChild(frag);
    this.renderSparks();
  };

  R.renderSparks = function () {
    const el = PT.el, pipes = this.doc.pipelines || {};
    const names = Object.keys(pipes).sort();
    PT.clear(this.sparks);
    if (!names.length) { this.sparks.appendChild(el("div", {class: "muted", text: "no finished runs yet"})); return; }
    for (const name of names) {
      const pts = pipes[name];
      const durs = pts.map((p) => p.duration_ms).sort((a, b) => a - b);
      const last = pts[pts.length - 1];
      const card = el("div", {class: "spark-card", dataset: {pipeline: name}},
        el("div", {class: "spark-head"}, PT.chip(last.system),
          el("button", {class: "linklike pipeline", text: name, title: "show only this pipeline",
                        onclick: () => { this.state.pipeline = name; this.root.querySelector("input[name=pipeline]").value = name; this.refresh(); }})),
        sparkline(pts),
        el("div", {class: "spark-foot muted small"},
          `${pts.length} runs · p50 ${PT.fmtDur(PT.percentile(durs, 0.5))} · p95 ${PT.fmtDur(PT.percentile(durs, 0.95))}`));
      this.sparks.appendChild(card);
    }
  };

  /* Bars, one per run (oldest left), height ∝ duration, coloured by result; click opens the run. */
  function sparkline(pts) {
    const el = PT.el, W = 220, H = 40, n = Math.max(pts.length, 12);
    const max = Math.max(...pts.map((p) => p.duration_ms), 1e-9);
    const bw = W / n;
    const svg = el("svg:svg", {class: "spark", width: W, height: H, viewBox: `0 0 ${W} ${H}`});
    pts.forEach((p, i) => {
      const h = Math.max(2, (p.duration_ms / max) * (H - 4));
      const r = el("svg:rect", {x: i * bw + 1, y: H - h, width: Math.max(1, bw - 2), height: h, rx: 1,
                                fill: PT.statusColor(p.status), class: "spark-bar"});
      r.appendChild(el("svg:title", {text: `${PT.fmtLocal(p.start * 1000)} · ${PT.fmtDur(p.duration_ms)} · ${p.status}`}));
      r.addEventListener("click", () => { location.hash = "#/run/" + p.trace_id; });
      svg.appendChild(r);
    });
    return svg;
  }
})();
