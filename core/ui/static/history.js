/* pipetrace viewer — task history: latency histogram of one task across recent runs, this run marked. */
"use strict";
(function () {
  const PT = window.PT;

  PT.History = function (host, model, opts) {
    this.model = model;
    this.opts = opts || {};
    const el = PT.el;
    this.list = el("div", {class: "hist-list"});
    this.chart = el("div", {class: "hist-chart"});
    this.root = el("div", {class: "hist"}, this.list, this.chart);
    host.appendChild(this.root);
    this.tasks = (model.doc.tasks || []).map((t) => {
      const spans = model.spans.filter((s) => s.attrs["cicd.pipeline.task.name"] === t.task &&
                                              s.attrs["cicd.pipeline.name"] === t.pipeline && s.name.startsWith("task "));
      return {pipeline: t.pipeline, task: t.task, spans};
    });
    if (!this.tasks.length) {
      this.chart.appendChild(el("div", {class: "empty", text: "No task spans in this run."}));
      return;
    }
    for (const t of this.tasks) {
      const longest = Math.max(...t.spans.map((s) => s.d));
      const item = el("button", {class: "hist-item", dataset: {task: t.task},
                                 onclick: () => this.show(t.pipeline, t.task)},
        el("span", {class: "hist-name", text: t.task}),
        el("span", {class: "muted", text: (t.spans.length > 1 ? t.spans.length + "× · " : "") + PT.fmtDur(longest)}));
      this.list.appendChild(item);
    }
  };
  const Hs = PT.History.prototype;

  Hs.show = async function (pipeline, task) {
    const el = PT.el;
    for (const b of this.list.querySelectorAll(".hist-item")) b.classList.toggle("sel", b.dataset.task === task);
    PT.clear(this.chart).appendChild(el("div", {class: "muted", text: "loading…"}));
    let doc;
    try {
      doc = await this.opts.load(pipeline, task);
    } catch (e) {
      PT.clear(this.chart).appendChild(el("div", {class: "error-box", text: "could not load history: " + e.message}));
      return;
    }
    const t = this.tasks.find((x) => x.pipeline === pipeline && x.task === task);
    const mine = t ? t.spans.map((s) => s.d) : [];
    PT.clear(this.chart);
    this.chart.appendChild(el("h3", {}, el("span", {text: task}), el("span", {class: "muted", text: "  ·  " + pipeline})));
    const stats = el("div", {class: "stats"},
      ...[["attempts", String(doc.count)], ["failures", String(doc.failures)], ["p50", PT.fmtDur(doc.p50_ms)],
          ["p95", PT.fmtDur(doc.p95_ms)], ["max", PT.fmtDur(doc.max_ms)],
          ["this run", mine.map(PT.fmtDur).join(", ") || "–"]]
        .map(([k, v]) => el("div", {class: "stat"}, el("span", {class: "muted", text: k}), el("b", {text: v, dataset: {stat: k}}))));
    this.chart.appendChild(stats);
    this.chart.appendChild(histogram(doc.durations_ms || [], mine, doc.p50_ms, doc.p95_ms));
    this.chart.appendChild(el("div", {class: "muted small", text: `last ${doc.count} attempts of this task in the store`}));
  };

  function histogram(values, mine, p50, p95) {
    const el = PT.el;
    const W = 640, Hh = 240, L = 40, B = 34, T = 30, R = 16;
    const all = values.concat(mine);
    const svg = el("svg:svg", {class: "hist-svg", width: W, height: Hh, viewBox: `0 0 ${W} ${Hh}`});
    if (!all.length) {
      svg.appendChild(el("svg:text", {x: W / 2, y: Hh / 2, "text-anchor": "middle", class: "muted", text: "no history yet"}));
      return svg;
    }
    let lo = Math.min(...all), hi = Math.max(...all);
    if (hi - lo < 1e-6) { lo = Math.max(0, lo * 0.9 - 0.5); hi = hi * 1.1 + 0.5; }
    const bins = Math.min(30, Math.max(8, Math.ceil(Math.sqrt(values.length)) * 2));
    const counts = new Array(bins).fill(0);
    const binOf = (v) => Math.min(bins - 1, Math.max(0, Math.floor((v - lo) / (hi - lo) * bins)));
    for (const v of values) counts[binOf(v)] += 1;
    const maxC = Math.max(1, ...counts);
    const x = (v) => L + (v - lo) / (hi - lo) * (W - L - R);
    const y = (c) => Hh - B - c / maxC * (Hh - B - T);
    const bw = (W - L - R) / bins;
    const mineBins = new Set(mine.map(binOf));
    counts.forEach((c, i) => {
      if (!c) return;
      const r = el("svg:rect", {x: L + i * bw + 1, y: y(c), width: Math.max(1, bw - 2), height: Hh - B - y(c),
                                class: "hbar" + (mineBins.has(i) ? " mine" : "")});
      r.appendChild(el("svg:title", {text: `${PT.fmtDur(lo + i * (hi - lo) / bins)} – ${PT.fmtDur(lo + (i + 1) * (hi - lo) / bins)}: ${c}`}));
      svg.appendChild(r);
    });
    svg.appendChild(el("svg:line", {x1: L, x2: W - R, y1: Hh - B, y2: Hh - B, class: "axis"}));
    svg.appendChild(el("svg:line", {x1: L, x2: L, y1: T - 6, y2: Hh - B, class: "axis"}));
    svg.appendChild(el("svg:text", {x: L - 6, y: y(maxC) + 4, "text-anchor": "end", class: "lbl", text: String(maxC)}));
    svg.appendChild(el("svg:text", {x: L - 6, y: Hh - B, "text-anchor": "end", class: "lbl", text: "0"}));
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4;
      svg.appendChild(el("svg:text", {x: x(v), y: Hh - B + 16, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle",
                                      class: "lbl", text: PT.fmtDur(v)}));
    }
    const marker = (v, cls) => svg.appendChild(el("svg:line", {x1: x(v), x2: x(v), y1: T - 4, y2: Hh - B, class: "mark " + cls}));
    const legend = [];
    if (values.length) {
      marker(p50, "p50");
      marker(p95, "p95");
      legend.push(["p50", "p50 " + PT.fmtDur(p50)], ["p95", "p95 " + PT.fmtDur(p95)]);
    }
    mine.forEach((v) => marker(v, "mine"));
    if (mine.length) legend.push(["mine", "this run " + mine.map(PT.fmtDur).join(", ")]);
    let lx = L;
    for (const [cls, label] of legend) {
      svg.appendChild(el("svg:line", {x1: lx, x2: lx + 16, y1: 8, y2: 8, class: "mark " + cls}));
      svg.appendChild(el("svg:text", {x: lx + 20, y: 12, class: "lbl " + cls, text: label}));
      lx += 30 + label.length * 6.6;
    }
    return svg;
  }
})();
