/* pipetrace viewer — one run: header, waterfall / flame graph / task history tabs, search, detail panel. */
"use strict";
(function () {
  const PT = window.PT;
  const QUEUED = "pipetrace.task.queued_ms";

  /* The span tree the views share: parent/children, depth, inbound links, critical path. */
  PT.buildModel = function (doc) {
    const byId = new Map(), children = new Map(), roots = [], inbound = new Map();
    for (const sp of doc.spans) {
      sp.system = sp.attrs["pipetrace.system"] || null;
      sp.queued = Number(sp.attrs[QUEUED] || 0) || 0;
      sp.synthetic = !!sp.attrs["pipetrace.synthetic"];
      byId.set(sp.id, sp);
    }
    for (const sp of doc.spans) {
      const p = sp.parent && sp.parent !== sp.id && byId.has(sp.parent) ? sp.parent : null;
      sp.parentId = p;
      if (p) { if (!children.has(p)) children.set(p, []); children.get(p).push(sp); } else roots.push(sp);
      for (const lk of sp.links || []) {
        if (lk.trace !== doc.trace_id) continue;
        if (!inbound.has(lk.span)) inbound.set(lk.span, []);
        inbound.get(lk.span).push(sp.id);
      }
    }
    const mi = (sp) => Number(sp.attrs["pipetrace.task.map_index"] ?? -1);
    const byStart = (a, b) => a.s - b.s || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || mi(a) - mi(b) ||
      PT.tryNumber(a) - PT.tryNumber(b);
    roots.sort(byStart);
    for (const kids of children.values()) kids.sort(byStart);
    // Depth, iteratively (a 10,000-span chain must not overflow the stack); guard against cycles.
    const stack = roots.map((r) => [r, 0]), seen = new Set();
    while (stack.length) {
      const [sp, d] = stack.pop();
      if (seen.has(sp.id)) continue;
      seen.add(sp.id);
      sp.depth = d;
      for (const k of children.get(sp.id) || []) {
        if (!k.system) k.system = sp.system;  // user and library spans inherit their task's system colour
        stack.push([k, d + 1]);
      }
    }
    let total = 0, maxQueueBefore = 0;
    for (const sp of doc.spans) {
      total = Math.max(total, sp.s + sp.d);
      maxQueueBefore = Math.max(maxQueueBefore, sp.queued - sp.s);
    }
    const counts = new Map();
    const descendants = (id) => {
      if (counts.has(id)) return counts.get(id);
      let n = 0;
      const st = [id];
      while (st.length) for (const k of children.get(st.pop()) || []) { n++; st.push(k.id); }
      counts.set(id, n);
      return n;
    };
    return {doc, traceId: doc.trace_id, spans: doc.spans, byId, children, roots, inbound, totalMs: total, maxQueueBefore,
            critical: new Set(doc.critical || []), linked: doc.linked || {}, descendants};
  };

  PT.RunView = function (host, traceId, params) {
    this.host = host;
    this.traceId = traceId;
    this.params = params || {};
    this.tab = this.params.tab || "waterfall";
    host.appendChild(PT.el("div", {class: "empty", text: "loading trace…"}));
    this.load();
  };
  const V = PT.RunView.prototype;

  V.destroy = function () { this.dead = true; clearInterval(this.timer); };

  V.fetchDoc = function () {
    if (PT.isReport) return Promise.resolve(PT.boot.trace);
    return PT.api("/api/trace/" + encodeURIComponent(this.traceId));
  };

  V.load = async function () {
    let doc;
    try {
      doc = await this.fetchDoc();
    } catch (e) {
      if (this.dead) return;
      PT.clear(this.host).appendChild(PT.el("div", {class: "error-box", text:
        e.status === 404 ? `No trace ${this.traceId} in the store.` : "Could not load the trace: " + e.message}));
      return;
    }
    if (this.dead) return;
    this.show(doc);
    if (doc.run.in_progress && !PT.isReport) {
      this.timer = setInterval(async () => {
        try {
          const fresh = await this.fetchDoc();
          if (this.dead) return;
          if (fresh.spans.length !== this.doc.spans.length || !fresh.run.in_progress) this.show(fresh, true);
          if (!fresh.run.in_progress) clearInterval(this.timer);
        } catch (e) { /* try again next tick */ }
      }, 4000);
    }
  };

  V.show = function (doc, keep) {
    const el = PT.el, prev = keep && this.wf ? {collapsed: this.wf.collapsed, selected: this.wf.selected, view: this.wf.view,
                                                  scroll: this.wf.body.scrollTop} : null;
    this.doc = doc;
    this.model = PT.buildModel(doc);
    const run = doc.run;
    document.title = `pipetrace · ${run.pipeline || "trace"} ${run.run_id || ""}`;
    PT.setCrumbs([[run.pipeline || "trace", null], [run.run_id || doc.trace_id, null]]);
    const m = this.model;
    const errors = doc.spans.filter(PT.isError).length;
    const retries = doc.spans.filter((sp) => PT.tryNumber(sp) > 1).length;
    this.searchInput = el("input", {type: "search", class: "search", placeholder: "search spans, attributes, ids…",
                                    "aria-label": "search in trace", value: this.params.q || ""});
    this.searchInfo = el("span", {class: "muted small search-info"});
    this.searchInput.addEventListener("input", () => this.search(false));
    this.searchInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.search(true, e.shiftKey); } });
    const dl = (fmt, label) => el("button", {class: "btn", dataset: {download: fmt}, text: label,
                                             title: fmt === "otlp-json" ? "OTLP/JSON (collector file format)" : "Jaeger UI “JSON File” upload",
                                             onclick: () => this.download(fmt)});
    const header = el("div", {class: "run-head"},
      el("div", {class: "run-title"},
        el("h1", {text: run.pipeline || "(unknown pipeline)"}),
        PT.badge(run.status),
        ...(run.systems || []).map(PT.chip)),
      el("div", {class: "run-meta"},
        el("span", {}, el("span", {class: "muted", text: "run "}), el("b", {class: "mono", text: run.run_id || "–"})),
        el("span", {}, el("span", {class: "muted", text: "started "}), PT.timeEl(run.start * 1000)),
        el("span", {}, el("span", {class: "muted", text: "duration "}), el("b", {text: PT.fmtDur(run.duration_ms)})),
        el("span", {}, el("b", {text: String(doc.spans.length)}), el("span", {class: "muted", text: " spans"})),
        run.counts && run.counts.tasks !== undefined ? el("span", {class: "run-counts"},
          el("b", {text: String(run.counts.tasks)}), el("span", {class: "muted", text: " tasks · "}),
          el("b", {text: String(run.counts.attempts)}), el("span", {class: "muted", text: " attempts · "}),
          el("b", {text: String(run.counts.failures)}), el("span", {class: "muted", text: " failed"})) : null,
        errors ? el("span", {class: "err-text", text: `⚠ ${errors} error${errors > 1 ? "s" : ""}`}) : null,
        retries ? el("span", {class: "retry-text", text: `↻ ${retries} retr${retries > 1 ? "ies" : "y"}`}) : null,
        el("span", {class: "muted mono small", text: "trace " + doc.trace_id})),
      el("div", {class: "run-actions"}, dl("otlp-json", "⤓ OTLP JSON"), dl("jaeger-json", "⤓ Jaeger JSON")));
    this.tabs = el("div", {class: "tabs", role: "tablist"},
      ...[["waterfall", "Waterfall"], ["flame", "Flame graph"], ["history", "Task history"]].map(([k, label]) =>
        el("button", {class: "tab", role: "tab", dataset: {tab: k}, text: label, onclick: () => this.setTab(k)})),
      el("span", {class: "spacer"}), this.searchInput, this.searchInfo);
    this.panes = {waterfall: el("div", {class: "pane"}), flame: el("div", {class: "pane"}), history: el("div", {class: "pane"})};
    this.detail = el("aside", {class: "detail"}, el("div", {class: "muted pad", text: "Select a span to see its details."}));
    const main = el("div", {class: "run-main"}, el("div", {class: "run-panes"}, ...Object.values(this.panes)), this.detail);
    PT.clear(this.host).appendChild(el("div", {class: "run-view"}, header, this.tabs, main));

    this.wf = new PT.Waterfall(this.panes.waterfall, m, {
      onSelect: (sp) => this.showDetail(sp),
      onLink: (lk) => this.openLink(lk.trace, lk.span),
    });
    this.flame = null;
    this.history = null;
    if (prev) {
      this.wf.collapsed = prev.collapsed;
      this.wf.view = prev.view;
      this.wf.recompute();
      this.wf.body.scrollTop = prev.scroll;
      if (prev.selected && m.byId.has(prev.selected)) this.wf.select(prev.selected, {scroll: false});
    }
    this.setTab(this.tab);
    if (this.params.q) this.search(false);
    if (!prev) {
      const want = this.params.span && m.byId.has(this.params.span) ? this.params.span : null;
      if (want) { this.setTab("waterfall"); this.wf.select(want); }
      else if (m.roots.length) this.wf.select(m.roots[0].id, {scroll: false});
    }
    if (!prev) requestAnimationFrame(() => { PT.firstPaint = performance.now(); document.body.dataset.ready = "1"; });
  };

  V.setTab = function (k) {
    this.tab = k;
    for (const b of this.tabs.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === k);
    for (const [name, pane] of Object.entries(this.panes)) pane.hidden = name !== k;
    if (k === "flame" && !this.flame) {
      this.flame = new PT.Flame(this.panes.flame, this.model, {onSelect: (id) => this.wf.select(id, {scroll: false})});
      this.search(false);
    }
    if (k === "history" && !this.history) {
      this.history = new PT.History(this.panes.history, this.model, {load: (p, t) => this.loadHistory(p, t)});
      const sel = this.model.byId.get(this.wf.selected);
      const task = sel && sel.attrs["cicd.pipeline.task.name"];
      const first = (this.doc.tasks || [])[0];
      if (task && sel.attrs["cicd.pipeline.name"]) this.history.show(sel.attrs["cicd.pipeline.name"], task);
      else if (first) this.history.show(first.pipeline, first.task);
    }
    if (k === "waterfall") this.wf.schedule();
  };

  V.loadHistory = function (pipeline, task) {
    if (PT.isReport) {
      const h = (this.doc.history || {})[pipeline + "\u0000" + task];
      return h ? Promise.resolve(h) : Promise.reject(new Error("not in this report"));
    }
    return PT.api(`/api/history?pipeline=${encodeURIComponent(pipeline)}&task=${encodeURIComponent(task)}`);
  };

  V.download = async function (fmt) {
    const name = `${this.doc.trace_id}.${fmt.split("-")[0]}.json`;
    if (PT.isReport) { PT.download(name, PT.boot.exports[fmt]); return; }
    try {
      PT.download(name, await PT.api(`/api/export/${this.doc.trace_id}?format=${fmt}`));
    } catch (e) { alert("download failed: " + e.message); }
  };

  /* Search: matches highlighted in the waterfall and flame graph; Enter jumps to the next one. */
  V.search = function (jump, back) {
    const q = this.searchInput.value.trim().toLowerCase();
    const m = this.model;
    if (!q) {
      this.matches = [];
      this.searchInfo.textContent = "";
      this.wf.setMatches(new Set(), null);
      if (this.flame) this.flame.setHighlight(null);
      return;
    }
    if (q !== this.lastQ) {
      this.lastQ = q;
      this.matches = m.spans.filter((sp) => {
        if (!sp.hay) sp.hay = [PT.spanLabel(sp), sp.id, sp.msg || "", ...Object.entries(sp.attrs).map(([k, v]) => k + "=" + v),
                               ...(sp.events || []).map((e) => e.name + " " + Object.values(e.attrs || {}).join(" "))]
          .join("\n").toLowerCase();
        return sp.hay.includes(q);
      }).map((sp) => sp.id);
      this.pos = -1;
    }
    if (jump && this.matches.length) {
      this.pos = (this.pos + (back ? -1 : 1) + this.matches.length) % this.matches.length;
      this.setTab(this.tab === "history" ? "waterfall" : this.tab);
      this.wf.select(this.matches[this.pos]);
    }
    const ids = new Set(this.matches);
    this.searchInfo.textContent = this.matches.length
      ? `${this.pos >= 0 ? this.pos + 1 + " / " : ""}${this.matches.length} match${this.matches.length > 1 ? "es" : ""} · Enter for next`
      : "no match";
    this.wf.setMatches(ids, this.pos >= 0 ? this.matches[this.pos] : null);
    if (this.flame) this.flame.setHighlight((n) => n.spans && n.spans.some((id) => ids.has(id)));
  };

  /* Follow a link: the same trace selects the span; another trace opens it (live viewer only). */
  V.openLink = function (traceId, spanId) {
    if (traceId === this.doc.trace_id) {
      this.setTab("waterfall");
      if (!this.wf.reveal(spanId)) { this.notice(`The linked span ${spanId} is not in this trace (yet).`); return; }
      this.wf.select(spanId);
      this.wf.body.focus({preventScroll: true});
      return;
    }
    if (PT.isReport) {
      const info = this.model.linked[traceId + ":" + spanId];
      this.notice(`That span is in another run (${info && info.pipeline ? info.pipeline + " " + (info.run_id || "") : "trace " + traceId}),` +
                  " which this single-file report does not include. Open it with `pipetrace ui`.");
      return;
    }
    location.hash = `#/run/${traceId}?span=${spanId}`;
  };

  V.notice = function (text) {
    const box = PT.el("div", {class: "notice", text});
    this.detail.prepend(box);
    setTimeout(() => box.remove(), 8000);
  };

  V.showDetail = function (sp) {
    const el = PT.el, m = this.model, d = PT.clear(this.detail);
    const res = PT.spanResult(sp);
    const t0 = this.doc.t0_ms;
    d.appendChild(el("div", {class: "detail-head"},
      el("h2", {text: PT.spanLabel(sp), class: "detail-name"}),
      el("div", {class: "row-gap"}, sp.system ? PT.chip(sp.system) : null, res ? PT.badge(res) : PT.badge(sp.status.toLowerCase()),
        m.critical.has(sp.id) ? el("span", {class: "crit-badge", text: "critical path"}) : null,
        sp.synthetic ? el("span", {class: "badge", title: "recorded after the fact from the orchestrator's record", text: "after the fact"}) : null)));
    const kv = el("dl", {class: "kv"});
    const add = (k, v) => { if (v === null || v === undefined || v === "") return; kv.appendChild(el("dt", {text: k})); kv.appendChild(el("dd", {}, v)); };
    add("duration", PT.fmtDur(sp.d));
    add("start", PT.timeEl(t0 + sp.s, true));
    add("offset", "+" + PT.fmtDur(sp.s));
    if (sp.queued) add("queue wait", PT.fmtDur(sp.queued));
    if (PT.tryNumber(sp) > 1) add("attempt", String(PT.tryNumber(sp)));
    add("kind", sp.kind);
    add("status", sp.status + (sp.msg ? ": " + sp.msg : ""));
    add("span id", el("span", {class: "mono", text: sp.id}));
    if (sp.parentId) add("parent", el("button", {class: "linklike", text: m.byId.get(sp.parentId).name, onclick: () => this.wf.select(sp.parentId)}));
    d.appendChild(kv);
    const task = sp.attrs["cicd.pipeline.task.name"], pipe = sp.attrs["cicd.pipeline.name"];
    if (task && pipe && sp.name.startsWith("task ")) {
      d.appendChild(el("button", {class: "btn small", text: "Task history ›", onclick: () => {
        this.setTab("history"); this.history.show(pipe, task);
      }}));
    }
    const exc = (sp.events || []).filter((e) => e.name === "exception");
    for (const e of exc) {
      d.appendChild(el("h3", {class: "err-text", text: "Exception"}));
      d.appendChild(el("div", {class: "exception"},
        el("b", {text: String(e.attrs["exception.type"] || "")}), " ", el("span", {text: String(e.attrs["exception.message"] || "")}),
        e.attrs["exception.stacktrace"] ? el("pre", {text: String(e.attrs["exception.stacktrace"])}) : null));
    }
    if (sp.links && sp.links.length) {
      d.appendChild(el("h3", {text: `Links (${sp.links.length})`}));
      const ul = el("ul", {class: "links"});
      for (const lk of sp.links) {
        const same = lk.trace === this.doc.trace_id;
        const tgt = same ? m.byId.get(lk.span) : null;
        const info = same ? null : m.linked[lk.trace + ":" + lk.span];
        const label = tgt ? tgt.name : info && info.name ? `${info.name} · ${info.pipeline || ""} ${info.run_id || ""}` : `span ${lk.span}`;
        ul.appendChild(el("li", {},
          el("span", {class: "link-kind", text: String(lk.attrs["pipetrace.link.kind"] || "link")}),
          el("button", {class: "linklike link-target", dataset: {trace: lk.trace, span: lk.span}, text: label,
                        onclick: () => this.openLink(lk.trace, lk.span)}),
          same ? null : el("span", {class: "muted small", text: " ↗ other run"})));
      }
      d.appendChild(ul);
    }
    const inb = m.inbound.get(sp.id) || [];
    if (inb.length) {
      d.appendChild(el("h3", {text: `Linked from (${inb.length})`}));
      const ul = el("ul", {class: "links"});
      for (const id of inb) {
        const src = m.byId.get(id);
        ul.appendChild(el("li", {}, el("span", {class: "link-kind", text: "⇢"}),
          el("button", {class: "linklike", text: src.name, onclick: () => this.openLink(this.doc.trace_id, id)})));
      }
      d.appendChild(ul);
    }
    d.appendChild(el("h3", {text: "Attributes"}));
    d.appendChild(attrTable(sp.attrs));
    const others = (sp.events || []).filter((e) => e.name !== "exception");
    if (others.length) {
      d.appendChild(el("h3", {text: `Events (${others.length})`}));
      for (const e of others) {
        d.appendChild(el("div", {class: "event"}, el("span", {class: "muted", text: "+" + PT.fmtDur(e.t) + " "}), el("b", {text: e.name})));
        if (Object.keys(e.attrs || {}).length) d.appendChild(attrTable(e.attrs));
      }
    }
    const resource = (this.doc.resources || [])[sp.res];
    if (resource && Object.keys(resource).length) {
      d.appendChild(el("details", {}, el("summary", {text: "Resource"}), attrTable(resource)));
    }
  };

  function attrTable(attrs) {
    const el = PT.el;
    const keys = Object.keys(attrs || {}).sort();
    if (!keys.length) return el("div", {class: "muted small", text: "none"});
    return el("table", {class: "attrs"}, ...keys.map((k) => {
      const v = attrs[k];
      return el("tr", {}, el("td", {class: "k", text: k}), el("td", {class: "v", text: Array.isArray(v) ? JSON.stringify(v) : String(v)}));
    }));
  }
})();
