/* pipetrace viewer — flame graph of one run.

   Spans with the same name under the same path are merged (all mapped instances of a task become one
   frame), so the widths show where the run's time went. A frame is as wide as its own time or the sum
   of its children, whichever is larger (parallel children can add up to more than the parent's wall
   time). Click a frame to zoom into it; click the top frame or "Reset" to zoom out. */
"use strict";
(function () {
  const PT = window.PT;
  const H = 24;

  function aggregate(model) {
    const root = {name: "all spans", key: "", spans: [], kids: new Map(), total: 0, first: 0, errors: 0, systems: new Map()};
    const walk = [];
    for (const r of model.roots) walk.push([r, root]);
    while (walk.length) {
      const [sp, parent] = walk.pop();
      let node = parent.kids.get(sp.name);
      if (!node) {
        node = {name: sp.name, key: parent.key + "\u0001" + sp.name, spans: [], kids: new Map(), total: 0,
                first: sp.s, errors: 0, systems: new Map(), parent};
        parent.kids.set(sp.name, node);
      }
      node.spans.push(sp.id);
      node.total += sp.d;
      node.first = Math.min(node.first, sp.s);
      if (PT.isError(sp)) node.errors += 1;
      node.systems.set(sp.system, (node.systems.get(sp.system) || 0) + 1);
      for (const k of model.children.get(sp.id) || []) walk.push([k, node]);
    }
    // Bottom-up values; children ordered by first start so the graph reads roughly like the run.
    const order = [];
    const stack = [root];
    while (stack.length) { const n = stack.pop(); order.push(n); for (const k of n.kids.values()) stack.push(k); }
    for (let i = order.length - 1; i >= 0; i--) {
      const n = order[i];
      n.list = Array.from(n.kids.values()).sort((a, b) => a.first - b.first);
      const sum = n.list.reduce((acc, k) => acc + k.value, 0);
      n.value = Math.max(n === root ? 0 : n.total, sum);
      n.self = Math.max(0, n.total - sum);
      n.system = Array.from(n.systems.entries()).sort((a, b) => b[1] - a[1]).map((e) => e[0])[0];
      n.depth = 0;
    }
    if (root.list.length === 1) { const only = root.list[0]; only.parent = null; return only; }
    root.total = root.value;
    return root;
  }

  PT.Flame = function (host, model, opts) {
    this.model = model;
    this.opts = opts || {};
    this.rootNode = aggregate(model);
    this.focus = this.rootNode;
    this.highlight = null;
    const el = PT.el;
    this.crumbs = el("span", {class: "flame-crumbs"});
    this.toolbar = el("div", {class: "wf-toolbar"},
      el("button", {class: "btn small", text: "Reset zoom", onclick: () => this.zoomTo(this.rootNode)}),
      el("span", {class: "muted", text: "merged by span name · width = time · click a frame to zoom"}),
      el("span", {class: "spacer"}), this.crumbs);
    this.svg = el("svg:svg", {class: "flame-svg"});
    this.scroller = el("div", {class: "flame-body"}, this.svg);
    this.root = el("div", {class: "flame"}, this.toolbar, this.scroller);
    host.appendChild(this.root);
    this.svg.addEventListener("mouseleave", () => PT.hideTip());
    if (window.ResizeObserver) new ResizeObserver(() => this.render()).observe(this.scroller);
    this.render();
  };
  const F = PT.Flame.prototype;

  F.zoomTo = function (node) { this.focus = node; this.render(); };
  F.setHighlight = function (fn) { this.highlight = fn; this.render(); };

  F.render = function () {
    const el = PT.el, svg = PT.clear(this.svg);
    const width = Math.max(300, this.scroller.clientWidth - 16);
    const focus = this.focus;
    // Ancestors of the focus take the full width; the focus subtree is laid out below them.
    const ancestors = [];
    for (let n = focus.parent; n; n = n.parent) ancestors.unshift(n);
    const frames = [];
    ancestors.forEach((n, i) => frames.push({n, x: 0, w: width, depth: i, ghost: true}));
    const base = ancestors.length;
    const lay = [[focus, 0, width, base]];
    let maxDepth = base;
    while (lay.length) {
      const [n, x, w, depth] = lay.pop();
      if (w < 0.5) continue;
      frames.push({n, x, w, depth});
      maxDepth = Math.max(maxDepth, depth);
      let cx = x;
      for (const k of n.list) {
        const kw = n.value > 0 ? (k.value / n.value) * w : 0;
        lay.push([k, cx, kw, depth + 1]);
        cx += kw;
      }
    }
    svg.setAttribute("width", width);
    svg.setAttribute("height", (maxDepth + 1) * H + 4);
    for (const f of frames) {
      const n = f.n;
      const allFailed = n.errors && n.spans && n.errors === n.spans.length;
      const color = allFailed ? PT.statusColor("failure") : PT.shade(PT.systemColor(n.system), n.name);
      const hit = this.highlight && this.highlight(n);
      const g = el("svg:g", {class: "frame" + (f.ghost ? " ghost" : "") + (hit ? " hit" : "") + (n.errors ? " err" : ""),
                             transform: `translate(${f.x},${f.depth * H})`, dataset: {name: n.name}});
      g.appendChild(el("svg:rect", {width: Math.max(0.5, f.w - 1), height: H - 2, rx: 2, fill: color}));
      if (n.errors && !allFailed) {  // some attempts failed: a red foot under the frame
        g.appendChild(el("svg:rect", {y: H - 5, width: Math.max(0.5, f.w - 1), height: 3, fill: PT.statusColor("failure")}));
      }
      const chars = Math.floor((f.w - 8) / 6.6);
      if (chars >= 3) {
        const label = (n.errors ? "⚠ " : "") + n.name + (n.spans && n.spans.length > 1 ? ` ×${n.spans.length}` : "");
        g.appendChild(el("svg:text", {x: 5, y: H - 9, text: label.length > chars ? label.slice(0, chars - 1) + "…" : label}));
      }
      g.addEventListener("mousemove", (e) => PT.showTip(e, n.name, [
        ["spans", String(n.spans ? n.spans.length : 0)], ["total time", PT.fmtDur(n.total)],
        ["self time", PT.fmtDur(n.self)], ["share", (100 * n.value / Math.max(this.rootNode.value, 1e-9)).toFixed(1) + "%"],
        ...(n.errors ? [["errors", String(n.errors)]] : [])]));
      g.addEventListener("click", () => {
        this.zoomTo(n === this.focus && n.parent ? n.parent : n);
        if (n.spans && n.spans.length && this.opts.onSelect) this.opts.onSelect(n.spans[0]);
      });
      svg.appendChild(g);
    }
    PT.clear(this.crumbs);
    [...ancestors, focus].forEach((n, i) => {
      if (i) this.crumbs.appendChild(document.createTextNode(" › "));
      this.crumbs.appendChild(el("button", {class: "linklike", text: n.name, onclick: () => this.zoomTo(n)}));
    });
  };
})();
