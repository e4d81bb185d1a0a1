/* pipetrace viewer — the waterfall: collapsible span tree with bars to scale.

   Rows are virtualised: only the rows in (and just around) the viewport exist in the DOM, so a run of
   10,000 spans paints and scrolls like a run of 10. Zoom: Ctrl/Alt + wheel, the +/− buttons, or drag a
   range on the time axis; pan: drag the bars area or Shift + wheel. */
"use strict";
(function () {
  const PT = window.PT;
  const ROW = 24, NAME_W = 380, OVERSCAN = 12, INDENT = 14;

  PT.Waterfall = function (host, model, opts) {
    this.model = model;
    this.opts = opts || {};
    this.collapsed = new Set();
    this.selected = null;
    this.matches = new Set();
    this.current = null;
    this.view = this.fitView();
    this.build(host);
    this.recompute();
  };
  const W = PT.Waterfall.prototype;

  W.build = function (host) {
    const el = PT.el;
    this.btn = (label, title, fn) => el("button", {class: "btn small", title, onclick: fn, text: label});
    const legend = el("div", {class: "legend"},
      el("span", {class: "lg"}, el("i", {class: "lg-queue"}), "queue wait"),
      el("span", {class: "lg"}, el("i", {class: "lg-crit"}), "critical path"),
      el("span", {class: "lg"}, el("i", {class: "lg-err"}), "error"),
      el("span", {class: "lg"}, el("b", {class: "retry-mark", text: "↻"}), "retry"),
      el("span", {class: "lg"}, el("b", {class: "link-mark", text: "⇠"}), "data link"));
    this.toolbar = el("div", {class: "wf-toolbar"},
      this.btn("−", "zoom out", () => this.zoom(2)),
      this.btn("+", "zoom in", () => this.zoom(0.5)),
      this.btn("Fit", "show the whole run", () => this.setView(...this.fitView())),
      this.btn("Zoom to span", "zoom to the selected span", () => this.zoomToSelected()),
      el("span", {class: "sep"}),
      this.btn("Collapse all", "collapse every span with children", () => this.collapseAll()),
      this.btn("Expand all", "expand every span", () => this.expandAll()),
      el("span", {class: "spacer"}),
      legend);
    this.axis = el("div", {class: "wf-axis"});
    this.brush = el("div", {class: "wf-brush", hidden: true});
    this.axis.appendChild(this.brush);
    this.header = el("div", {class: "wf-header"},
      el("div", {class: "wf-namehead", style: {width: NAME_W + "px"}}, "span", el("span", {class: "muted", text: " · duration"})),
      this.axis);
    this.rowsLayer = el("div", {class: "wf-rows"});
    this.links = el("svg:svg", {class: "wf-links"});
    this.grid = el("div", {class: "wf-grid"});
    this.spacer = el("div", {class: "wf-spacer"}, this.grid, this.rowsLayer, this.links);
    this.body = el("div", {class: "wf-body", tabindex: 0}, this.spacer);
    this.root = el("div", {class: "wf"}, this.toolbar, this.header, this.body);
    host.appendChild(this.root);

    this.body.addEventListener("scroll", () => this.schedule());
    this.body.addEventListener("wheel", (e) => this.onWheel(e), {passive: false});
    this.body.addEventListener("mousedown", (e) => this.onDown(e));
    this.body.addEventListener("keydown", (e) => this.onKey(e));
    this.body.addEventListener("mouseleave", () => PT.hideTip());
    this.axis.addEventListener("mousedown", (e) => this.onAxisDown(e));
    if (window.ResizeObserver) new ResizeObserver(() => this.schedule()).observe(this.body);
    else window.addEventListener("resize", () => this.schedule());
  };

  /* Visible rows: depth-first over the tree, skipping the children of collapsed spans. */
  W.recompute = function () {
    const rows = [], m = this.model;
    const stack = [];
    for (let i = m.roots.length - 1; i >= 0; i--) stack.push(m.roots[i]);
    while (stack.length) {
      const sp = stack.pop();
      rows.push(sp);
      if (this.collapsed.has(sp.id)) continue;
      const kids = m.children.get(sp.id);
      if (kids) for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
    }
    this.rows = rows;
    this.index = new Map(rows.map((sp, i) => [sp.id, i]));
    this.spacer.style.height = rows.length * ROW + "px";
    this.schedule();
  };

  W.schedule = function () {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => { this.pending = 0; this.render(); });
  };

  W.trackWidth = function () { return Math.max(120, this.body.clientWidth - NAME_W - 8); };
  W.x = function (t, tw) { return (t - this.view[0]) / (this.view[1] - this.view[0]) * tw; };

  W.render = function () {
    const el = PT.el, tw = this.trackWidth(), m = this.model;
    const top = this.body.scrollTop, height = this.body.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    this.renderAxis(tw);
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.appendChild(this.rowEl(this.rows[i], i, tw));
    PT.clear(this.rowsLayer).appendChild(frag);
    this.renderLinks(first, last, tw);
    this.rendered = [first, last];
    if (this.opts.onRender) this.opts.onRender(this);
    void m;
  };

  W.rowEl = function (sp, i, tw) {
    const el = PT.el, m = this.model;
    const kids = m.children.get(sp.id);
    const err = PT.isError(sp), retry = PT.isRetry(sp), crit = m.critical.has(sp.id);
    const cls = ["wf-row"];
    if (i % 2) cls.push("odd");
    if (sp.id === this.selected) cls.push("sel");
    if (crit) cls.push("crit");
    if (err) cls.push("err");
    if (this.matches.has(sp.id)) cls.push("match");
    if (sp.id === this.current) cls.push("current");
    const toggle = kids ? el("span", {class: "wf-toggle", title: this.collapsed.has(sp.id) ? "expand" : "collapse",
                                      text: this.collapsed.has(sp.id) ? "▸" : "▾", dataset: {toggle: sp.id}})
                        : el("span", {class: "wf-toggle none"});
    const badges = el("span", {class: "wf-badges"});
    if (this.collapsed.has(sp.id) && kids) badges.appendChild(el("span", {class: "count", text: String(m.descendants(sp.id))}));
    if (err) badges.appendChild(el("span", {class: "err-mark", title: "error", text: "⚠"}));
    if (retry) badges.appendChild(el("span", {class: "retry-mark", title: "attempt " + PT.tryNumber(sp), text: "↻" + PT.tryNumber(sp)}));
    if (sp.links && sp.links.length) {
      badges.appendChild(el("span", {class: "link-mark", title: sp.links.length + " data link(s) — click to open",
                                     text: "⇠" + sp.links.length, dataset: {link: sp.id}}));
    }
    const name = el("div", {class: "wf-name", style: {width: NAME_W + "px", paddingLeft: 6 + sp.depth * INDENT + "px"}},
      toggle,
      el("span", {class: "dot", style: {background: PT.systemColor(sp.system)}}),
      el("span", {class: "wf-label", text: PT.spanLabel(sp), title: sp.name}),
      badges,
      el("span", {class: "wf-dur", text: PT.fmtDur(sp.d)}));
    const track = el("div", {class: "wf-track"});
    const x0 = this.x(sp.s, tw), x1 = this.x(sp.s + sp.d, tw);
    if (sp.queued > 0) {
      const q0 = this.x(sp.s - sp.queued, tw);
      track.appendChild(el("div", {class: "wf-queue", title: "queue wait " + PT.fmtDur(sp.queued),
                                   style: {left: q0 + "px", width: Math.max(1, x0 - q0) + "px"}}));
    }
    const color = err ? PT.statusColor("failure") : retry && PT.spanResult(sp) === "retry" ? PT.statusColor("retry")
      : PT.spanResult(sp) === "skip" || PT.spanResult(sp) === "skipped" ? PT.statusColor("skip") : PT.systemColor(sp.system);
    track.appendChild(el("div", {class: "wf-bar" + (crit ? " crit" : "") + (sp.synthetic ? " synthetic" : ""),
                                 style: {left: x0 + "px", width: Math.max(2, x1 - x0) + "px", background: color}}));
    for (const ev of sp.events || []) {
      if (ev.name !== "exception") continue;
      track.appendChild(el("div", {class: "wf-event", title: "exception", style: {left: this.x(ev.t, tw) + "px"}}));
    }
    const labelX = Math.max(x1, 0) + 4;
    if (labelX < tw - 40) track.appendChild(el("span", {class: "wf-barlabel", style: {left: labelX + "px"}, text: PT.fmtDur(sp.d)}));
    return el("div", {class: cls.join(" "), style: {top: i * ROW + "px"}, dataset: {span: sp.id}}, name, track);
  };

  W.renderAxis = function (tw) {
    const el = PT.el;
    for (const n of Array.from(this.axis.querySelectorAll(".tick"))) n.remove();
    PT.clear(this.grid);
    const [v0, v1] = this.view, step = PT.niceStep(v1 - v0, tw);
    const start = Math.ceil(v0 / step) * step;
    for (let t = start; t <= v1 + 1e-9; t += step) {
      const x = this.x(t, tw);
      this.axis.appendChild(el("span", {class: "tick", style: {left: x + "px"}, text: t === 0 ? "0" : PT.fmtDur(t)}));
      this.grid.appendChild(el("div", {class: "gridline", style: {left: NAME_W + x + "px"}}));
    }
  };

  /* Links inside the trace, drawn as curves from the producer's end to the consumer's start. */
  W.renderLinks = function (first, last, tw) {
    const el = PT.el, svg = PT.clear(this.links);
    svg.setAttribute("width", tw);
    svg.setAttribute("height", this.rows.length * ROW);
    svg.style.left = NAME_W + "px";
    const defs = el("svg:defs", {}, el("svg:marker", {id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"}, el("svg:path", {d: "M0,0 L8,4 L0,8 z", class: "arrowhead"})));
    svg.appendChild(defs);
    const draw = (src, tgt, strong) => {
      const i = this.index.get(src.id), j = this.index.get(tgt.id);
      if (i === undefined || j === undefined) return;
      if ((i < first || i >= last) && (j < first || j >= last) && !strong) return;
      const xa = this.x(tgt.s + tgt.d, tw), ya = j * ROW + ROW / 2;
      const xb = this.x(src.s, tw), yb = i * ROW + ROW / 2;
      const dx = Math.max(24, Math.abs(xb - xa) / 2);
      svg.appendChild(el("svg:path", {class: "wf-link" + (strong ? " strong" : ""), "marker-end": "url(#arrow)",
        d: `M${xa},${ya} C${xa + dx},${ya} ${xb - dx},${yb} ${xb},${yb}`}));
    };
    const m = this.model;
    for (let i = first; i < last; i++) {
      const sp = this.rows[i];
      for (const lk of sp.links || []) {
        const tgt = lk.trace === m.traceId ? m.byId.get(lk.span) : null;
        if (tgt) draw(sp, tgt, sp.id === this.selected || tgt.id === this.selected);
      }
      for (const srcId of m.inbound.get(sp.id) || []) {
        const src = m.byId.get(srcId);
        const si = this.index.get(srcId);
        if (src && (si === undefined || si < first || si >= last)) draw(src, sp, src.id === this.selected || sp.id === this.selected);
      }
    }
  };

  /* ---- interaction ------------------------------------------------------------------------------ */
  W.onWheel = function (e) {
    const rect = this.body.getBoundingClientRect();
    const px = e.clientX - rect.left - NAME_W;
    if ((e.ctrlKey || e.altKey || e.metaKey) && px >= 0) {
      e.preventDefault();
      const tw = this.trackWidth(), [v0, v1] = this.view;
      const at = v0 + (px / tw) * (v1 - v0);
      this.zoom(e.deltaY > 0 ? 1.25 : 0.8, at);
    } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      e.preventDefault();
      const d = e.shiftKey ? e.deltaY : e.deltaX;
      this.pan(d / this.trackWidth() * (this.view[1] - this.view[0]));
    }
  };

  W.onDown = function (e) {
    if (e.button !== 0) return;
    const rect = this.body.getBoundingClientRect();
    const inTrack = e.clientX - rect.left > NAME_W;
    const startX = e.clientX, view0 = this.view.slice();
    let dragged = false;
    const move = (ev) => {
      if (!inTrack) return;
      const dx = ev.clientX - startX;
      if (Math.abs(dx) > 3) dragged = true;
      if (dragged) {
        const span = view0[1] - view0[0];
        const shift = -dx / this.trackWidth() * span;
        this.view = [view0[0] + shift, view0[1] + shift];
        this.body.classList.add("panning");
        this.schedule();
      }
    };
    const up = (ev) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      this.body.classList.remove("panning");
      if (!dragged) this.onClick(ev);
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
  };

  W.onClick = function (e) {
    const t = e.target;
    if (!(t instanceof Element)) return;
    const toggle = t.closest("[data-toggle]");
    if (toggle) { this.toggle(toggle.dataset.toggle); return; }
    const row = t.closest(".wf-row");
    if (!row) return;
    const link = t.closest("[data-link]");
    this.select(row.dataset.span, {scroll: false});
    if (link && this.opts.onLink) {
      const sp = this.model.byId.get(link.dataset.link);
      if (sp && sp.links && sp.links.length) this.opts.onLink(sp.links[0]);
    }
  };

  W.onAxisDown = function (e) {
    if (e.button !== 0) return;
    const rect = this.axis.getBoundingClientRect();
    const x0 = e.clientX - rect.left;
    const b = this.brush;
    const move = (ev) => {
      const x1 = Math.min(Math.max(0, ev.clientX - rect.left), rect.width);
      b.hidden = false;
      b.style.left = Math.min(x0, x1) + "px";
      b.style.width = Math.abs(x1 - x0) + "px";
    };
    const up = (ev) => {
      window.removeEventListener("mousemove", move);
      window.removeEventListener("mouseup", up);
      b.hidden = true;
      const x1 = Math.min(Math.max(0, ev.clientX - rect.left), rect.width);
      if (Math.abs(x1 - x0) < 5) return;
      const [v0, v1] = this.view, tw = rect.width;
      const a = v0 + Math.min(x0, x1) / tw * (v1 - v0), z = v0 + Math.max(x0, x1) / tw * (v1 - v0);
      this.setView(a, z);
    };
    window.addEventListener("mousemove", move);
    window.addEventListener("mouseup", up);
    e.preventDefault();
  };

  W.onKey = function (e) {
    const i = this.index.get(this.selected);
    if (i === undefined) return;
    const sp = this.rows[i];
    if (e.key === "ArrowDown" && i + 1 < this.rows.length) this.select(this.rows[i + 1].id);
    else if (e.key === "ArrowUp" && i > 0) this.select(this.rows[i - 1].id);
    else if (e.key === "ArrowLeft" && this.model.children.has(sp.id) && !this.collapsed.has(sp.id)) this.toggle(sp.id);
    else if (e.key === "ArrowRight" && this.collapsed.has(sp.id)) this.toggle(sp.id);
    else return;
    e.preventDefault();
  };

  W.zoom = function (factor, at) {
    const [v0, v1] = this.view;
    const c = at === undefined ? (v0 + v1) / 2 : at;
    const total = Math.max(this.model.totalMs, 0.001);
    const span = Math.min(Math.max((v1 - v0) * factor, total / 1e6, 0.001), total * 4);
    const left = (c - v0) / (v1 - v0);
    this.setView(c - span * left, c - span * left + span);
  };
  W.fitView = function () {
    const t = Math.max(this.model.totalMs, 0.001), q = this.model.maxQueueBefore || 0;
    return [Math.min(0, -q) - t * 0.005, t * 1.015];
  };
  W.pan = function (dms) { this.setView(this.view[0] + dms, this.view[1] + dms); };
  W.setView = function (a, z) {
    if (!(z > a)) return;
    this.view = [a, z];
    this.schedule();
  };
  W.zoomToSelected = function () {
    const sp = this.model.byId.get(this.selected);
    if (!sp) return;
    const q = sp.queued || 0, pad = Math.max((sp.d + q) * 0.08, 0.001);
    this.setView(sp.s - q - pad, sp.s + sp.d + pad);
  };

  W.toggle = function (id) {
    if (this.collapsed.has(id)) this.collapsed.delete(id); else this.collapsed.add(id);
    this.recompute();
  };
  W.collapseAll = function () {
    for (const id of this.model.children.keys()) this.collapsed.add(id);
    for (const r of this.model.roots) this.collapsed.delete(r.id);
    this.recompute();
  };
  W.expandAll = function () { this.collapsed.clear(); this.recompute(); };

  /* Make a span visible: expand its ancestors, scroll it into view. */
  W.reveal = function (id) {
    let sp = this.model.byId.get(id);
    if (!sp) return false;
    let changed = false;
    for (let p = this.model.byId.get(sp.parentId); p; p = this.model.byId.get(p.parentId)) {
      if (this.collapsed.delete(p.id)) changed = true;
    }
    if (changed) this.recompute();
    const i = this.index.get(id);
    const h = this.body.clientHeight || 600;
    if (i !== undefined && (i * ROW < this.body.scrollTop || (i + 1) * ROW > this.body.scrollTop + h)) {
      this.body.scrollTop = Math.max(0, i * ROW - h / 3);
    }
    this.schedule();
    return true;
  };

  W.select = function (id, o) {
    if (!this.model.byId.has(id)) return;
    this.selected = id;
    if (!o || o.scroll !== false) this.reveal(id);
    this.schedule();
    if (this.opts.onSelect) this.opts.onSelect(this.model.byId.get(id));
  };

  W.setMatches = function (ids, current) {
    this.matches = ids;
    this.current = current || null;
    if (current) this.reveal(current);
    this.schedule();
  };

  W.ROW = ROW;
  W.NAME_W = NAME_W;
})();
