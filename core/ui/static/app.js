/* pipetrace viewer — routing: #/ (runs list), #/run/<trace id>?span=…&tab=…&q=… (one run). */
"use strict";
(function () {
  const PT = window.PT;
  const app = document.getElementById("app");
  let view = null;

  PT.setCrumbs = function (items) {
    const nav = PT.clear(document.getElementById("crumbs"));
    for (const [label, href] of items) {
      nav.appendChild(document.createTextNode(" / "));
      nav.appendChild(href ? PT.el("a", {href, text: label}) : PT.el("span", {text: label}));
    }
  };

  function parse() {
    const h = location.hash.replace(/^#/, "") || "/";
    const [path, qs] = h.split("?");
    return {path, params: Object.fromEntries(new URLSearchParams(qs || ""))};
  }

  function route() {
    const {path, params} = parse();
    if (view && view.destroy) view.destroy();
    PT.clear(app);
    PT.hideTip();
    delete document.body.dataset.ready;
    const m = path.match(/^\/run\/([^/]+)$/);
    if (PT.isReport) {
      const tid = PT.boot.trace.trace_id;
      if (m && m[1] !== tid) {
        location.hash = `#/run/${tid}`;
        return;
      }
      view = new PT.RunView(app, tid, params);
    } else if (m) {
      view = new PT.RunView(app, decodeURIComponent(m[1]), params);
    } else {
      PT.setCrumbs([["runs", null]]);
      document.title = "pipetrace · runs";
      view = new PT.RunsView(app);
    }
  }

  const note = document.getElementById("mode-note");
  if (PT.isReport) {
    note.textContent = `single-file report · pipetrace ${PT.boot.version}`;
    document.getElementById("brand").removeAttribute("href");
  } else {
    note.textContent = `live · read-only · pipetrace ${PT.boot.version}`;
  }
  window.addEventListener("hashchange", route);
  route();
})();
