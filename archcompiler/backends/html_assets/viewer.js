// The archc viewer. All the numbers, labels and colours come from archc (archc-data); this
// script keeps the set of open composites, builds DOT for it as backends/dot.py would, lays it
// out with Viz.js (Graphviz in WebAssembly), and links the diagram, the details and the table.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("archc-data").textContent);
  const byId = new Map(data.nodes.map((n) => [n.id, n]));
  const named = new Set((data.named_inputs || []).map((t) => t.name));
  const kids = new Map(); // parent id ("" for the top) -> its layers, in spec order
  for (const n of data.nodes) {
    if (!kids.has(n.parent)) kids.set(n.parent, []);
    kids.get(n.parent).push(n);
  }
  const open = new Set(data.open); // composite ids drawn as clusters
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas"), status = $("status"), search = $("search");
  let viz = null, svg = null, selected = null, hovered = null;
  let matches = [], matchAt = -1;
  const view = { x: 0, y: 0, k: 1 };

  // --- DOT for the current open set (backends/dot.py's structure and attributes) ---

  const KEYWORDS = /^(node|edge|graph|digraph|subgraph|strict)$/i;
  const quote = (v) => { // bare where DOT allows, as the graphviz Python package writes it
    v = String(v);
    if (/^([A-Za-z_][A-Za-z0-9_]*|-?(\.[0-9]+|[0-9]+(\.[0-9]*)?))$/.test(v) && !KEYWORDS.test(v)) return v;
    return '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  };
  // a label between < and > is graphviz's HTML-like label, as in the graphviz Python package
  const value = (k, v) => (k === "label" && /^<.*>$/s.test(v) ? v : quote(v));
  // one statement a line, as the graphviz Python package writes dot.py's DOT
  const attrs = (o) => (Object.keys(o).length ? " [" + Object.entries(o).map(([k, v]) => k + "=" + value(k, v)).join(" ") + "]" : "");

  function source(prefix, name, output) { // the drawn node producing tensor `name` of the graph at `prefix`
    if (name === "input") return prefix || "input"; // a body's input: its cluster's head
    if (!prefix && named.has(name)) return name; // a block drawn alone: its named inputs
    const id = prefix ? prefix + "." + name : name;
    const n = byId.get(id);
    // an opened composite: the body node computing its output (`output`: which one, of several)
    return n.composite && open.has(id) ? source(id, output || n.output) : id;
  }

  function dotText() {
    const s = data.style, night = dark.matches, out = ["digraph model {"];
    out.push("graph" + attrs({ ...s.graph, rankdir: data.rankdir, bgcolor: "transparent" }));
    out.push("node" + attrs(s.node));
    out.push("edge" + attrs(night ? { ...s.edge, ...s.dark.edge } : s.edge));
    out.push(quote("input") + attrs({ ...data.input.attrs, id: "n:input" }));
    for (const t of data.named_inputs || []) out.push(quote(t.name) + attrs({ ...t.attrs, id: "n:" + t.name }));
    const drawn = [];
    (function emit(prefix, depth) {
      for (const n of kids.get(prefix) || []) {
        drawn.push([prefix, n]);
        if (n.composite && open.has(n.id)) {
          const fill = (night ? s.dark.cluster_fills : s.cluster_fills)[depth % 2];
          out.push("subgraph " + quote("cluster_" + n.id) + " {");
          out.push("graph" + attrs({ ...n.cluster, fillcolor: fill, id: "c:" + n.id }));
          out.push(quote(n.id) + attrs({ ...n.head, id: "n:" + n.id }));
          emit(n.id, depth + 1);
          out.push("}");
        } else {
          out.push(quote(n.id) + attrs({ ...n.attrs, id: "n:" + n.id }));
        }
      }
    })("", 0);
    out.push(quote("@output") + attrs({ ...data.output.attrs, id: "n:@output" }));
    for (const [prefix, n] of drawn) {
      for (const e of n.edges) {
        const a = {};
        if (e.label !== null) a.label = e.label;
        if (e.dashed) a.style = "dashed";
        out.push(quote(source(prefix, e.from, e.output)) + " -> " + quote(n.id) + attrs(a));
      }
    }
    for (const o of data.output.from) out.push(quote(source("", o.from)) + " -> " + quote("@output") + attrs({ label: o.label }));
    out.push("}");
    return out.join("\n");
  }

  // --- drawing, and keeping a node where it was on screen across a re-layout ---

  const visible = (n) => !n.parent || (open.has(n.parent) && visible(byId.get(n.parent)));
  const nodeEl = (id) => (svg ? svg.querySelector('g.node[id="n:' + CSS.escape(id) + '"]') : null);

  function screenCenter(id) {
    const el = nodeEl(id);
    if (!el) return null;
    const r = el.getBoundingClientRect(), c = canvas.getBoundingClientRect();
    return { x: r.left + r.width / 2 - c.left, y: r.top + r.height / 2 - c.top };
  }

  function draw(anchor) {
    const before = anchor ? screenCenter(anchor) : null;
    let el;
    try {
      el = viz.renderSVGElement(dotText());
    } catch (err) {
      status.textContent = "Graphviz could not lay out this graph: " + err;
      status.className = "error";
      console.error(err);
      return;
    }
    const w = el.viewBox.baseVal.width * 4 / 3, h = el.viewBox.baseVal.height * 4 / 3; // graphviz's points, in CSS pixels
    el.setAttribute("width", w);
    el.setAttribute("height", h);
    el.querySelectorAll("title").forEach((t) => t.remove()); // graphviz's tooltips repeat the id
    for (const g of el.querySelectorAll("g.node")) {
      const n = byId.get(g.id.slice(2));
      if (n && n.composite) g.classList.add("composite");
    }
    if (svg) svg.replaceWith(el); else canvas.appendChild(el);
    svg = el;
    apply(); // the current view, before measuring where the anchor landed
    status.textContent = "";
    status.className = "";
    if (before) {
      const after = screenCenter(anchor);
      if (after) pan(before.x - after.x, before.y - after.y);
    } else fit();
    mark();
    syncTable();
    document.body.dataset.drawn = String((Number(document.body.dataset.drawn) || 0) + 1);
  }

  // --- pan and zoom: one CSS transform on the svg ---

  function apply() { if (svg) svg.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.k})`; }
  function pan(dx, dy) { view.x += dx; view.y += dy; apply(); }
  function zoom(f, px, py) {
    const k = Math.min(4, Math.max(0.03, view.k * f));
    f = k / view.k;
    view.x = px - (px - view.x) * f;
    view.y = py - (py - view.y) * f;
    view.k = k;
    apply();
  }
  function fit(whole) {
    // `whole` (Fit, 0) shows all of it; the first view of a model too big for that starts at its
    // top left at the smallest readable size instead
    if (!svg) return;
    const c = canvas.getBoundingClientRect(), w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
    const all = Math.min(1, (c.width - 24) / w, (c.height - 24) / h);
    view.k = whole === true ? all : Math.max(all, 0.7);
    view.x = w * view.k < c.width ? (c.width - w * view.k) / 2 : 12;
    view.y = h * view.k < c.height ? (c.height - h * view.k) / 2 : 12;
    apply();
  }
  function center(id) {
    const p = screenCenter(id);
    if (!p) return;
    const c = canvas.getBoundingClientRect();
    if (view.k < 0.6) zoom(0.8 / view.k, p.x, p.y);
    const q = screenCenter(id);
    pan(c.width / 2 - q.x, c.height / 2 - q.y);
  }

  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    drag = { x: e.clientX, y: e.clientY, moved: false };
    canvas.focus({ preventScroll: true });
  });
  window.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return; // a click, not a drag
    drag.moved = true;
    canvas.classList.add("dragging");
    drag.x = e.clientX; drag.y = e.clientY;
    pan(dx, dy);
  });
  window.addEventListener("pointerup", () => { canvas.classList.remove("dragging"); setTimeout(() => (drag = null)); });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const c = canvas.getBoundingClientRect();
    zoom(Math.exp(-e.deltaY * (e.deltaMode ? 0.05 : 0.0015)), e.clientX - c.left, e.clientY - c.top);
  }, { passive: false });

  document.addEventListener("keydown", (e) => {
    if ((e.target !== document.body && e.target !== canvas) || e.ctrlKey || e.metaKey || e.altKey) return; // not while typing or on a button
    const c = canvas.getBoundingClientRect(), step = 80;
    const keys = {
      "+": () => zoom(1.25, c.width / 2, c.height / 2), "=": () => zoom(1.25, c.width / 2, c.height / 2),
      "-": () => zoom(0.8, c.width / 2, c.height / 2), "0": () => fit(true),
      ArrowLeft: () => pan(step, 0), ArrowRight: () => pan(-step, 0), ArrowUp: () => pan(0, step), ArrowDown: () => pan(0, -step),
      "/": () => search.focus(),
      Enter: () => selected && byId.get(selected)?.composite && toggle(selected),
      Escape: () => select(null),
    };
    if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
  });

  // --- open, close, select ---

  function toggle(id) {
    if (open.has(id)) {
      for (const o of [...open]) if (o === id || o.startsWith(id + ".")) open.delete(o);
    } else open.add(id);
    draw(id);
  }

  function reveal(id) { // open every composite around `id`; the outermost one opened, or null
    let n = byId.get(id), outer = null;
    while (n && n.parent) {
      if (!open.has(n.parent)) { open.add(n.parent); outer = n.parent; }
      n = byId.get(n.parent);
    }
    return outer;
  }

  function goTo(id) {
    const opened = reveal(id);
    if (opened) draw(opened); // drawn before, so it can hold its place
    select(id);
    center(id);
  }

  function select(id) {
    selected = id;
    mark();
    details(id);
    const row = rows.get(id);
    if (row) row.scrollIntoView({ block: "nearest" });
  }

  function mark() { // the selection and the search matches, on the diagram and in the table
    if (!svg) return;
    const found = new Set(matches);
    for (const g of svg.querySelectorAll("g.node")) {
      const id = g.id.slice(2);
      g.classList.toggle("selected", id === selected);
      g.classList.toggle("match", found.has(id));
    }
    for (const [id, tr] of rows) {
      tr.classList.toggle("selected", id === selected);
      tr.classList.toggle("match", found.has(id));
    }
  }

  canvas.addEventListener("click", (e) => {
    if (drag && drag.moved) return;
    const g = e.target.closest("g.node");
    if (!g) return;
    const id = g.id.slice(2);
    if (!byId.has(id)) return; // the input and output terminals
    select(id);
    if (byId.get(id).composite) toggle(id);
  });
  canvas.addEventListener("mouseover", (e) => {
    const g = e.target.closest("g.node"), id = g ? g.id.slice(2) : null;
    if (id !== hovered) { hovered = byId.has(id) ? id : null; details(hovered || selected); }
  });
  canvas.addEventListener("mouseleave", () => { hovered = null; details(selected); });

  // --- the details panel ---

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

  function details(id) {
    const box = $("details"), n = id ? byId.get(id) : null;
    if (!n) {
      box.innerHTML = `<h2>${esc(data.title)}</h2><div class="type">input ${esc(data.input.shape)}</div>` +
        `<p class="hint">${esc(data.summary)}.</p><p class="hint">Hover or click a node to see its parameters, costs and spec lines.</p>`;
      return;
    }
    const fam = data.style.legend.find((f) => f.family === n.family) || {};
    const params = Object.entries(n.params).map(([k, v]) => `${esc(k)}=${esc(JSON.stringify(v))}`).join(", ");
    let src = "";
    if (n.source) {
      // number and text side by side, so a long line wraps under its own text, not under the number
      const lines = n.source.lines.map((l, i) => `<span class="ln">${n.source.line + i}</span><span>${esc(l)}</span>`);
      src = `<div class="where">${esc(n.source.file)}:${n.source.line}</div>` + (lines.length ? `<pre>${lines.join("")}</pre>` : "");
    }
    box.innerHTML =
      `<h2>${esc(n.id)}</h2>` +
      `<div class="type"><i style="background:${fam.fill};border-color:${fam.border}"></i>${esc(n.type)} (${esc(fam.text || n.family)})` +
      `${n.composite ? (open.has(n.id) ? " - open; click its head to close" : " - click to open") : ""}</div>` +
      `<dl><dt>parameters</dt><dd>${params || "none"}</dd>` +
      `<dt>inputs</dt><dd>${esc(n.inputs.join(", "))}</dd>` +
      `<dt>output</dt><dd>${esc(n.shape)}</dd>` +
      `<dt>params</dt><dd>${esc(n.count)}</dd>` +
      `<dt>FLOPs</dt><dd>${esc(n.flops)}</dd>` +
      `<dt>activations</dt><dd>${esc(n.activations)} (fp32, batch 1)</dd></dl>` + src;
  }

  // --- the layer table (the rows of `archc check`, or `--expand` for open composites) ---

  const rows = new Map();
  function buildTable() {
    const body = document.querySelector("#table tbody");
    const fixed = (cells) => { const tr = body.insertRow(); tr.className = "fixed"; tr.innerHTML = cells.map((c, i) => `<td${i > 2 ? ' class="num"' : ""}>${esc(c)}</td>`).join(""); };
    fixed(["input", "", data.input.shape, "", ""]);
    for (const n of data.nodes) {
      const tr = body.insertRow();
      // .tw holds a composite's open/closed triangle (syncTable), and keeps names aligned
      tr.innerHTML = `<td style="padding-left:${4 + 12 * n.depth}px"><span class="tw"></span>${esc(n.name)}</td><td>${esc(n.type)}</td>` +
        `<td>${esc(n.shape)}</td><td class="num">${esc(n.count)}</td><td class="num">${esc(n.flops)}</td>`;
      tr.dataset.id = n.id;
      tr.addEventListener("click", (e) => {
        if (n.composite && e.target.classList.contains("tw")) { select(n.id); toggle(n.id); return; }
        goTo(n.id);
      });
      tr.addEventListener("mouseenter", () => details(n.id));
      tr.addEventListener("mouseleave", () => details(selected));
      rows.set(n.id, tr);
    }
    fixed(["Total", "", "", data.totals.params, data.totals.flops]);
  }
  function syncTable() {
    for (const [id, tr] of rows) {
      const n = byId.get(id);
      tr.hidden = !visible(n);
      if (n.composite) tr.querySelector(".tw").textContent = open.has(id) ? "\u25be" : "\u25b8";
    }
  }

  // --- search ---

  function find(text, step) {
    const q = text.trim().toLowerCase();
    const was = matches[matchAt];
    // a name or a type; a dotted path only when asked for (every node inside `attn` has `attn` in its path)
    const hit = (n) => n.name.toLowerCase().includes(q) || n.type.toLowerCase().includes(q) || (q.includes(".") && n.id.toLowerCase().includes(q));
    matches = q ? data.nodes.filter(hit).map((n) => n.id) : [];
    matchAt = matches.length ? Math.max(0, matches.indexOf(was)) : -1;
    if (step && matches.length) {
      matchAt = (matchAt + step + matches.length) % matches.length;
      goTo(matches[matchAt]);
    }
    $("found").textContent = q ? (matches.length ? `${step ? matchAt + 1 + " of " : ""}${matches.length} found` : "none found") : "";
    mark();
  }
  search.addEventListener("input", () => { matchAt = -1; find(search.value, 0); });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); find(search.value, e.shiftKey ? -1 : 1); }
    if (e.key === "Escape") { search.value = ""; find("", 0); canvas.focus(); }
  });

  // --- start ---

  async function loadViz() { // Viz.js is inlined gzipped (backends/html.py): unpack it, run it
    const packed = Uint8Array.from(atob(document.getElementById("archc-viz").textContent), (c) => c.charCodeAt(0));
    const code = await new Response(new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"))).blob();
    await new Promise((done, fail) => {
      const script = document.createElement("script");
      script.src = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
      script.onload = done;
      script.onerror = () => fail(new Error("the inlined Viz.js did not load"));
      document.head.appendChild(script);
    });
    return Viz.instance();
  }

  $("title").textContent = data.title;
  $("summary").textContent = data.summary;
  $("legend").innerHTML = data.style.legend.map((f) => `<span><i style="background:${f.fill};border-color:${f.border}"></i>${esc(f.text)}</span>`).join("");
  $("expand-all").addEventListener("click", () => { data.nodes.forEach((n) => n.composite && open.add(n.id)); draw(null); });
  $("collapse-all").addEventListener("click", () => { open.clear(); draw(null); });
  $("fit").addEventListener("click", () => fit(true));
  dark.addEventListener("change", () => viz && draw(selected && visible(byId.get(selected)) ? selected : null));
  buildTable();
  details(null);
  loadViz().then((v) => { viz = v; draw(null); }).catch((err) => {
    status.textContent = "Could not start Graphviz: " + err;
    status.className = "error";
    console.error(err);
  });
  window.archcViewer = { open, toggle, goTo, select, center, dotText }; // for tests and the console
})();
