// tinygrad_lstm graph explorer: folds and unfolds the recorded graph and lays out what is shown with Graphviz
// (the vendored Viz.js, WebAssembly), offline. The data is the renderer's own graph object for both views,
// written by tinygrad_lstm/viz/explorer.py. Scripting: window.graphExplorer (see the end of this file).
(function () {
  "use strict";

  const STEP = /^t=(-?\d+)$/;
  // Viridis-like stops, tinted as the static renders tint them (tinygrad_lstm/viz/dot.py).
  const PALETTE = [[0x44, 0x01, 0x54], [0x3b, 0x52, 0x8b], [0x21, 0x91, 0x8c], [0x5e, 0xc9, 0x62], [0xfd, 0xe7, 0x25]];
  const BAD = "#d62728", NO_GRAD = "#eeeeee", ZERO = "#bbbbbb", UNREACHED = "#f2f2f2";
  const FAN = 4;             // a node with more edges than this to folded boxes keeps the first and last only
  const FOLD_ABOVE = 300;    // more nodes than this: the page opens with one box per step
  const UNFOLD_LIMIT = 2500; // "unfold all" stops at this many nodes (laying out more takes too long)
  // More steps than this in one sequence: they are grouped in blocks (t=0..99) of a power of ten, so that
  // no level shows more than about BLOCK_MAX boxes. Measured with the vendored Viz.js: a chain of 1000
  // step boxes in a cluster takes 2.5 s to lay out, 100 boxes 0.3 s.
  const BLOCK_MAX = 100;
  const BLOCK = /^t=(-?\d+)\.\.(-?\d+)$/;

  let D = null, viz = null;
  const S = { view: "forward", expanded: new Set(), step: null, pinned: null, drawn: null, rendering: null, zoom: "fit" };
  const $ = (id) => document.getElementById(id);

  function num(x) { return x === "NaN" ? NaN : x === "Inf" ? Infinity : x === "-Inf" ? -Infinity : x; }
  function fmt(x) {
    if (x === null || x === undefined) return "-";
    if (Number.isNaN(x)) return "NaN";
    if (!Number.isFinite(x)) return "Inf";
    // As Python's "%.2e": two exponent digits.
    return x.toExponential(2).replace(/e([+-])(\d)$/, "e$10$2");
  }
  function fmtv(x) { return x === null || x === undefined ? "-" : Number(x).toPrecision(4); }
  function esc(s) { return '"' + String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"').split("\n").join("\\n") + '"'; }
  function html(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

  function colour(x, lo, hi) {
    if (!Number.isFinite(x)) return [BAD, "white"];
    if (x <= 0) return [ZERO, "black"];
    let t = hi <= lo ? 0.5 : (Math.log10(x) - lo) / (hi - lo);
    t = Math.min(1, Math.max(0, t)) * (PALETTE.length - 1);
    const i = Math.min(Math.floor(t), PALETTE.length - 2), f = t - i;
    const rgb = PALETTE[i].map((a, k) => Math.round(255 - (255 - (a + (PALETTE[i + 1][k] - a) * f)) * 0.6));
    const lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
    return ["#" + rgb.map((c) => c.toString(16).padStart(2, "0")).join(""), lum < 120 ? "white" : "black"];
  }

  // ---------------------------------------------------------------------------------------------- data

  async function load() {
    const b64 = $("graph-data").textContent.trim();
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  function prepare(d) {
    // Scopes: every prefix of every path, with its parent, children and time step.
    const index = new Map();
    const scopes = [];
    function scopeId(path) {
      let i = index.get(path);
      if (i !== undefined) return i;
      const parts = path === "" ? [] : path.split("/");
      const parent = parts.length ? scopeId(parts.slice(0, -1).join("/")) : -1;
      i = scopes.length;
      const m = parts.length ? STEP.exec(parts[parts.length - 1]) : null;
      scopes.push({ id: i, path, parts, parent, children: [], t: m ? Number(m[1]) : null, step: null, depth: parts.length });
      index.set(path, i);
      if (parent >= 0) scopes[parent].children.push(i);
      const s = scopes[i];
      s.step = s.t !== null ? s.t : parent >= 0 ? scopes[parent].step : null;
      return i;
    }
    scopeId("");
    const scopeOf = d.scopes.map(scopeId);
    d.scopeList = scopes;
    d.scopeIndex = index;
    for (const s of scopes) s.children.sort((a, b) => natural(scopes[a], scopes[b]));
    // Long sequences: group the step scopes of one parent into blocks, as virtual scopes between them.
    for (const p of scopes.slice()) {
      const stepKids = p.children.filter((c) => scopes[c].t !== null);
      if (stepKids.length <= BLOCK_MAX) continue;
      let size = 10;
      while (stepKids.length / size > BLOCK_MAX * 0.6) size *= 10;
      const groups = new Map();
      for (const c of stepKids) {
        const k = Math.floor(scopes[c].t / size);
        if (!groups.has(k)) groups.set(k, []);
        groups.get(k).push(c);
      }
      const others = p.children.filter((c) => scopes[c].t === null);
      const blocks = [];
      for (const kids of groups.values()) {
        const a = scopes[kids[0]].t, b = scopes[kids[kids.length - 1]].t;
        const name = `t=${a}..${b}`, path = p.path ? p.path + "/" + name : name;
        const i = scopes.length;
        scopes.push({ id: i, path, parts: [...p.parts, name], parent: p.id, children: kids, t: null, step: null, depth: p.depth + 1, block: [a, b] });
        index.set(path, i);
        for (const c of kids) scopes[c].parent = i;
        blocks.push(i);
      }
      p.children = [...others, ...blocks];
    }
    // Parents before children (blocks were added at the end of the list).
    d.scopeOrder = [];
    (function walk(s) { d.scopeOrder.push(s); for (const c of scopes[s].children) walk(c); })(0);
    for (const s of d.scopeOrder) if (s > 0) scopes[s].depth = scopes[scopes[s].parent].depth + 1;
    const T = d.tensors;
    for (const k of ["min", "mean", "max", "grad"]) T[k] = T[k].map(num);
    const steps = new Set();
    for (const s of scopes) if (s.t !== null) steps.add(s.t);
    d.steps = [...steps].sort((a, b) => a - b);
    for (const view of ["forward", "backward"]) {
      const V = d.views[view];
      const N = V.nodes, n = N.id.length;
      V.n = n;
      V.scope = Int32Array.from(N.scope, (s) => scopeOf[s]);
      V.grad = N.grad.map(num);
      V.byId = new Map(N.id.map((id, i) => [id, i]));
      V.seq = Int32Array.from(N.tensor, (t) => (t >= 0 ? T.seq[t] : 1 << 30));
      // Seeds (no tensor) come after everything: the backward pass starts there.
      const E = V.edges;
      E.grad = E.grad.map(num);
      V.count = new Int32Array(scopes.length); // nodes under each scope, for the labels of boxes
      for (let i = 0; i < n; i++) for (let s = V.scope[i]; s > 0; s = scopes[s].parent) V.count[s]++;
      let lo = Infinity, hi = -Infinity;
      for (const g of V.grad.concat(E.grad)) if (g !== null && Number.isFinite(g) && g > 0) { const l = Math.log10(g); lo = Math.min(lo, l); hi = Math.max(hi, l); }
      if (!(hi >= lo)) { lo = 0; hi = 0; }
      if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
      V.lo = lo; V.hi = hi;
      // The first and last seq of the ops inside time steps: what runs before/after the unrolled sequence.
      let first = Infinity, last = -Infinity;
      for (let i = 0; i < n; i++) if (scopes[V.scope[i]].step !== null && V.seq[i] >= 0) { first = Math.min(first, V.seq[i]); last = Math.max(last, V.seq[i]); }
      V.firstStepSeq = first; V.lastStepSeq = last;
    }
    d.seriesOf = new Map();
    for (const s of d.series) s.tensor.forEach((ti, k) => d.seriesOf.set(ti, { series: s, k }));
    return d;
  }

  function natural(a, b) {
    const x = a.parts[a.parts.length - 1] || "", y = b.parts[b.parts.length - 1] || "";
    const mx = STEP.exec(x) || BLOCK.exec(x), my = STEP.exec(y) || BLOCK.exec(y);
    if (mx && my) return Number(mx[1]) - Number(my[1]);
    if (mx) return -1;
    if (my) return 1;
    return x < y ? -1 : x > y ? 1 : 0;
  }

  // ---------------------------------------------------------------------------------------------- folding

  function initialFold() {
    const scopes = D.scopeList;
    S.expanded = new Set(scopes.filter((s) => s.id > 0).map((s) => s.path));
    const total = Math.max(D.views.forward.n, D.views.backward.n);
    if (total > FOLD_ABOVE) {
      // Long sequences open folded: one box per time step (steps inside steps stay as they are).
      for (const s of scopes) if (s.t !== null || s.block) S.expanded.delete(s.path);
      if (!D.steps.length) for (const s of scopes) if (s.depth === 1) S.expanded.delete(s.path);
    }
  }

  // The box standing for each scope (-1: the scope is shown unfolded or is the top level).
  function boxes() {
    const scopes = D.scopeList, box = new Int32Array(scopes.length).fill(-1);
    for (const id of D.scopeOrder) {
      const s = scopes[id];
      if (s.id === 0) continue;
      const pb = box[s.parent];
      box[s.id] = pb >= 0 ? pb : S.expanded.has(s.path) ? -1 : s.id;
    }
    return box;
  }

  function reached(kind, stepT, seq, V) {
    if (S.step === null) return true;
    if (stepT !== null) return stepT >= S.step;
    if (kind === "seed" || seq > V.lastStepSeq) return true;   // after the sequence: the loss, reached first
    return S.step < D.steps[0];                                  // before it: the leaves, reached last
  }

  // The drawn graph for the current view and folds: nodes (real or boxes), clusters, merged edges; then DOT.
  function layoutModel() {
    const V = D.views[S.view], N = V.nodes, E = V.edges, scopes = D.scopeList, kinds = D.kinds;
    const box = boxes();
    const rep = new Array(V.n);
    const drawn = new Map(); // dot name -> {name, id, kind, scope, cluster, label, grad, t, members}
    for (let i = 0; i < V.n; i++) {
      const s = V.scope[i], b = box[s];
      if (b >= 0) {
        const name = "b" + b;
        let d = drawn.get(name);
        if (!d) {
          const sc = scopes[b];
          d = { name, id: "box:" + sc.path, kind: "box", scope: b, cluster: sc.parent, t: sc.step, members: [], grad: null, extra: "" };
          drawn.set(name, d);
        }
        d.members.push(i);
        rep[i] = name;
      } else {
        const name = "n" + i;
        drawn.set(name, { name, id: N.id[i], kind: kinds[N.kind[i]], scope: s, cluster: s, t: scopes[s].step, index: i, grad: V.grad[i], extra: "" });
        rep[i] = name;
      }
    }
    // Merge edges between drawn nodes.
    const merged = new Map();
    for (let k = 0; k < E.src.length; k++) {
      const a = rep[E.src[k]], b = rep[E.dst[k]];
      if (a === b) continue;
      const key = a + ">" + b + ">" + E.style[k];
      let m = merged.get(key);
      if (!m) { m = { a, b, n: 0, grad: null, shapes: new Map(), style: E.style[k], label: D.strings[E.label[k]], constraint: 0, edges: [] }; merged.set(key, m); }
      m.n++;
      m.edges.push(k);
      const g = E.grad[k];
      if (g !== null) m.grad = m.grad === null ? g : Number.isNaN(g) || Number.isNaN(m.grad) ? NaN : Math.max(m.grad, g);
      const sh = D.strings[E.shape[k]];
      m.shapes.set(sh, (m.shapes.get(sh) || 0) + 1);
      m.constraint |= E.constraint[k];
    }
    // A box's gradient: the nodes inside it whose tensors cross its frame (as the static renders' groups).
    const crossing = new Map();
    for (const m of merged.values()) for (const k of m.edges) {
      for (const [end, i] of [[m.a, E.src[k]], [m.b, E.dst[k]]]) if (end[0] === "b") {
        if (!crossing.has(end)) crossing.set(end, new Set());
        crossing.get(end).add(i);
      }
    }
    for (const d of drawn.values()) if (d.kind === "box") {
      let sq = 0, any = false, nan = false, inf = false;
      for (const i of crossing.get(d.name) || []) {
        const g = V.grad[i];
        if (g === null) continue;
        any = true;
        if (Number.isFinite(g)) sq += g * g;
      }
      // Red if any node inside is NaN/Inf, as the static renders' groups.
      for (const i of d.members) { const g = V.grad[i]; if (g !== null && Number.isNaN(g)) nan = true; else if (g !== null && !Number.isFinite(g)) inf = true; }
      d.grad = nan ? NaN : inf ? Infinity : any ? Math.sqrt(sq) : null;
    }
    // Fans: a node wired to many folded boxes (a weight, the input projection, the stack of outputs) keeps
    // its edges to the first and the last box; the label says how many more there are.
    const fans = new Map();
    for (const [key, m] of merged) {
      for (const [mine, other] of [[m.a, m.b], [m.b, m.a]]) {
        if (mine[0] === "n" && other[0] === "b") {
          if (!fans.has(mine)) fans.set(mine, []);
          fans.get(mine).push(key);
        }
      }
    }
    for (const [name, keys] of fans) {
      if (keys.length <= FAN) continue;
      // Keep the edge to the box nearest along the flow drawn: out-edges go to the first step in the forward
      // view and to the last in the backward view (the gradient starts there); in-edges the other way round.
      const when = (m) => { const o = drawn.get(m.a === name ? m.b : m.a); return o.t !== null ? o.t : D.scopeList[o.scope].block ? D.scopeList[o.scope].block[0] : 0; };
      const groups = [keys.filter((k) => merged.get(k).a === name), keys.filter((k) => merged.get(k).b === name)];
      groups.forEach((group, inward) => {
        if (!group.length) return;
        group.sort((x, y) => when(merged.get(x)) - when(merged.get(y)));
        const last = (S.view === "backward") !== !!inward;
        const keep = last ? group[group.length - 1] : group[0];
        for (const key of group) if (key !== keep) merged.delete(key);
      });
      drawn.get(name).extra = `wired to ${keys.length} folded boxes (one edge drawn)`;
    }
    return { drawn, merged, V };
  }

  function nodeLines(d, V) {
    const lines = [];
    if (d.kind === "box") {
      const sc = D.scopeList[d.scope];
      lines.push(sc.parts[sc.parts.length - 1] + "  [+]");
      if (sc.block) lines.push(`${sc.children.length} steps`);
      lines.push(`${V.count[d.scope]} ${S.view === "forward" ? "nodes" : "backward nodes"}`);
    } else {
      lines.push(...D.strings[V.nodes.label[d.index]].split("\n"));
      if (V.nodes.root[d.index] && d.kind !== "seed") lines.push("(output)");
    }
    if (d.extra) lines.push(d.extra);
    if (D.showGrads && d.grad !== null && d.kind !== "seed" && d.kind !== "detached") lines.push("|g| " + fmt(d.grad));
    return lines;
  }

  function nodeAttrs(d, V) {
    const a = {};
    switch (d.kind) {
      case "leaf": case "acc": Object.assign(a, { shape: "box", style: '"rounded,filled"', fillcolor: '"#dbe9f6"' }); break;
      case "op": case "vjp": Object.assign(a, { shape: "ellipse", fontsize: "9" }); break;
      case "sum": Object.assign(a, { shape: "circle", fontsize: "9", fillcolor: '"#fff3c4"' }); break;
      case "seed": Object.assign(a, { shape: "box", fillcolor: '"#d9f2d9"' }); break;
      case "box": Object.assign(a, { shape: "box3d", fillcolor: '"#f3f3f3"', margin: '"0.14,0.06"' }); break;
      case "detached": Object.assign(a, { shape: "box", style: '"dashed,filled"', fillcolor: '"#f7f7f7"' }); break;
    }
    if (d.index !== undefined && V.nodes.root[d.index]) a.peripheries = "2";
    if (D.showGrads && d.kind !== "seed" && d.kind !== "detached") {
      if (d.grad === null) { if (d.kind !== "leaf" && d.kind !== "sum") a.fillcolor = `"${NO_GRAD}"`; }
      else {
        const [fill, font] = colour(d.grad, V.lo, V.hi);
        a.fillcolor = `"${fill}"`; a.fontcolor = `"${font}"`;
        if (!Number.isFinite(d.grad)) { a.color = `"${BAD}"`; a.penwidth = "2"; }
      }
    }
    d.fill = a.fillcolor ? a.fillcolor.slice(1, -1) : "white";
    return a;
  }

  function toDot(model) {
    const { drawn, merged, V } = model, scopes = D.scopeList;
    const byCluster = new Map();
    for (const d of drawn.values()) {
      const a = nodeAttrs(d, V);
      const attrs = Object.entries(a).map(([k, v]) => `${k}=${v}`).join(", ");
      const line = `${d.name} [label=${esc(nodeLines(d, V).join("\n"))}, ${attrs}];`;
      if (!byCluster.has(d.cluster)) byCluster.set(d.cluster, []);
      byCluster.get(d.cluster).push(line);
    }
    // Which clusters hold something (directly or below).
    const live = new Set();
    for (const c of byCluster.keys()) for (let s = c; s >= 0; s = scopes[s].parent) live.add(s);
    const out = [
      "digraph explorer {",
      `graph [rankdir=${D.rankdir}, compound=true, fontname="Helvetica", fontsize=12];`,
      'node [fontname="Helvetica", fontsize=10, style=filled, fillcolor=white, margin="0.06,0.03", height=0.3];',
      'edge [fontname="Helvetica", fontsize=8, arrowsize=0.6];',
    ];
    (function emit(c) {
      for (const line of byCluster.get(c) || []) out.push(line);
      for (const ch of scopes[c].children) {
        if (!live.has(ch)) continue;
        const sc = scopes[ch];
        out.push(`subgraph "cluster_${ch}" {`);
        out.push(`label=${esc(sc.parts[sc.parts.length - 1] + "  [-]")}; labeljust=l; style="rounded"; color="#888888"; fontsize=11;`);
        emit(ch);
        out.push("}");
      }
    })(0);
    for (const m of merged.values()) {
      const a = drawn.get(m.a), b = drawn.get(m.b);
      let label = m.label || "";
      const add = (s) => { label = label ? label + "\n" + s : s; };
      if (a.kind === "box" || b.kind === "box") add([...m.shapes].slice(0, 3).map(([s, c]) => (c > 1 ? `${s} x${c}` : s)).join(", "));
      if (D.showGrads && m.grad !== null && S.view === "backward" && a.kind !== "box" && b.kind !== "box") add("|g| " + fmt(m.grad));
      const attrs = [];
      if (label) attrs.push(`label=${esc(label)}`);
      if (m.style) attrs.push("style=dashed");
      if (D.showGrads && m.grad !== null) { attrs.push(`color="${colour(m.grad, V.lo, V.hi)[0]}"`); if (!Number.isFinite(m.grad)) attrs.push("penwidth=2"); }
      // (No constraint=false: the vendored Graphviz aborts on it in large clustered graphs, and the few
      // unfolded steps do not need it for speed.)
      out.push(`${m.a} -> ${m.b}${attrs.length ? " [" + attrs.join(", ") + "]" : ""};`);
    }
    out.push("}");
    return out.join("\n");
  }

  // ---------------------------------------------------------------------------------------------- drawing

  async function render() {
    // One layout at a time; a request made while one runs is served after it with the state of that moment.
    if (S.rendering) { S.again = true; return S.rendering; }
    S.rendering = (async () => {
      do {
        S.again = false;
        const t0 = performance.now();
        const model = layoutModel();
        const dot = toDot(model);
        let svg;
        try {
          svg = viz.renderSVGElement(dot);
        } catch (e) {
          status(`layout failed: ${e.message || e}`, true);
          throw e;
        }
        decorate(svg, model);
        const host = $("graph");
        host.replaceChildren(svg);
        S.drawn = model;
        applyZoom();
        const ms = performance.now() - t0;
        api.lastLayoutMs = ms;
        status(`${S.view}: ${model.drawn.size} nodes drawn of ${model.V.n} (${ms.toFixed(0)} ms)`);
        applyStep();
      } while (S.again);
    })();
    try { await S.rendering; } finally { S.rendering = null; }
  }

  function decorate(svg, model) {
    const scopes = D.scopeList;
    svg.querySelectorAll("g.node").forEach((g) => {
      const title = g.querySelector("title");
      const d = model.drawn.get(title ? title.textContent : "");
      if (title) title.remove();
      if (!d) return;
      g.dataset.node = d.id;
      if (d.kind === "box") g.dataset.scope = scopes[d.scope].path;
      g._d = d;
      const shape = g.querySelector("ellipse, polygon, path");
      if (shape) shape.dataset.fill = shape.getAttribute("fill") || "";
    });
    svg.querySelectorAll("g.cluster").forEach((g) => {
      const title = g.querySelector("title");
      const m = title ? /^cluster_(\d+)$/.exec(title.textContent) : null;
      if (title) title.remove();
      if (m) g.dataset.scope = scopes[Number(m[1])].path;
    });
    svg.querySelectorAll("g.edge").forEach((g) => {
      const title = g.querySelector("title");
      if (title) { const [a, b] = title.textContent.split("->"); g._ends = [a, b]; title.remove(); }
    });
  }

  // Zoom: a factor, or "fit" (the drawing's width fits the pane, never enlarged).
  function applyZoom() {
    const svg = $("graph").querySelector("svg");
    if (!svg) return;
    if (!svg.dataset.w) { svg.dataset.w = parseFloat(svg.getAttribute("width")); svg.dataset.h = parseFloat(svg.getAttribute("height")); }
    const w = Number(svg.dataset.w) * 4 / 3, h = Number(svg.dataset.h) * 4 / 3; // pt -> px
    const pane = $("graph").clientWidth - 20;
    const z = S.zoom === "fit" ? Math.max(0.3, Math.min(1, pane / w)) : S.zoom;
    svg.setAttribute("width", (w * z).toFixed(0) + "px");
    svg.setAttribute("height", (h * z).toFixed(0) + "px");
    $("zoom-label").textContent = Math.round(z * 100) + "%";
    api.zoom = z;
  }

  function setZoom(z) {
    if (z !== "fit" && !(typeof z === "number" && z > 0)) throw new Error(`graphExplorer.setZoom: a factor > 0 or "fit", got ${JSON.stringify(z)}`);
    S.zoom = z;
    applyZoom();
  }

  function nodeReached(d, V) {
    if (d.kind === "box") return d.members.some((i) => reached(D.kinds[V.nodes.kind[i]], D.scopeList[V.scope[i]].step, V.seq[i], V));
    return reached(d.kind, d.t, d.index !== undefined ? V.seq[d.index] : 0, V);
  }

  function applyStep() {
    if (!S.drawn) return;
    const { V } = S.drawn;
    const host = $("graph");
    const state = new Map();
    host.querySelectorAll("g.node[data-node]").forEach((g) => {
      const d = g._d, ok = nodeReached(d, V);
      state.set(d.name, ok);
      g.classList.toggle("unreached", !ok);
      const shape = g.querySelector("ellipse, polygon, path");
      if (shape) shape.setAttribute("fill", ok ? shape.dataset.fill : UNREACHED);
    });
    host.querySelectorAll("g.edge").forEach((g) => {
      if (!g._ends) return;
      // The gradient along an edge is there once its producer ran: the source in the backward view (edges
      // follow the gradient), the target in the forward view (edges follow the data).
      const end = S.view === "backward" ? g._ends[0] : g._ends[1];
      g.classList.toggle("unreached", state.get(end) === false);
    });
    const lab = $("step-label"), input = $("step");
    if (S.step === null) { lab.textContent = "done"; input.value = input.max; }
    else if (S.step > D.steps[D.steps.length - 1]) lab.textContent = "loss";
    else if (S.step < D.steps[0]) lab.textContent = "done";
    else lab.textContent = "t = " + S.step;
  }

  function status(text, error) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", !!error);
  }

  // ---------------------------------------------------------------------------------------------- info

  function info(id) {
    if (typeof id !== "string") throw new TypeError("graphExplorer.info: id must be a string (a data-node value)");
    if (id.startsWith("box:")) {
      const path = id.slice(4), s = D.scopeIndex.get(path);
      if (s === undefined) return null;
      const V = D.views[S.view];
      const d = S.drawn && [...S.drawn.drawn.values()].find((x) => x.id === id);
      return { id, kind: "box", op: "scope", scope: path, t: D.scopeList[s].step, nodes: V.count[s], grad_norm: d ? d.grad : null, view: S.view };
    }
    for (const view of [S.view, S.view === "forward" ? "backward" : "forward"]) {
      const V = D.views[view], i = V.byId.get(id);
      if (i === undefined) continue;
      const T = D.tensors, ti = V.nodes.tensor[i], kind = D.kinds[V.nodes.kind[i]];
      const out = {
        id, kind, view, scope: D.scopeList[V.scope[i]].path, t: D.scopeList[V.scope[i]].step,
        label: D.strings[V.nodes.label[i]], grad_norm: V.grad[i],
      };
      if (ti >= 0) {
        Object.assign(out, {
          op: D.strings[T.op[ti]], name: D.strings[T.name[ti]] || null, shape: D.strings[T.shape[ti]],
          dtype: D.strings[T.dtype[ti]], min: T.min[ti], mean: T.mean[ti], max: T.max[ti], kept: T.kept[ti] === 1, seq: T.seq[ti],
          tensor_grad_norm: T.grad[ti],
        });
        // The shapes going in: the tensors on the node's incoming forward edges.
        const F = D.views.forward, fi = F.byId.get("op" + T.seq[ti]);
        if (fi !== undefined) {
          if (!F.inEdges) { F.inEdges = new Map(); F.edges.dst.forEach((d, k) => { if (!F.inEdges.has(d)) F.inEdges.set(d, []); F.inEdges.get(d).push(k); }); }
          out.inputs = (F.inEdges.get(fi) || []).map((k) => D.strings[F.edges.shape[k]]);
        }
        const s = D.seriesOf.get(ti);
        if (s) out.series = { name: s.series.name, t: s.series.t, grad_norm: s.series.tensor.map((x) => T.grad[x]) };
      } else {
        out.op = kind;
      }
      return out;
    }
    return null;
  }

  function showInfo(id) {
    const x = info(id);
    const el = $("info");
    if (!x) { el.innerHTML = '<p class="hint">no such node</p>'; return; }
    const rows = [];
    const row = (k, v) => rows.push(`<tr><td>${k}</td><td>${html(v)}</td></tr>`);
    if (x.kind === "box") {
      row("scope", x.scope); row("nodes", x.nodes); row("|g| crossing", fmt(x.grad_norm));
      el.innerHTML = `<h3>${html(x.scope)}</h3><table>${rows.join("")}</table><p class="hint">click to unfold</p>`;
      return;
    }
    row("op", x.op + (x.kind === "vjp" ? " (its VJP)" : x.kind === "sum" ? " (sum of gradients)" : x.kind === "acc" ? " (AccumulateGrad)" : ""));
    if (x.name) row("name", x.name);
    row("scope", x.scope || "(top level)");
    if (x.inputs && x.inputs.length) row("inputs", x.inputs.join(", "));
    if (x.shape !== undefined) { row("shape", x.shape); row("dtype", x.dtype); row("min / mean / max", x.kept ? `${fmtv(x.min)} / ${fmtv(x.mean)} / ${fmtv(x.max)}` : "value not kept (no backward needs it)"); }
    row("gradient norm", x.grad_norm === null ? "none" : fmt(x.grad_norm));
    let plot = "";
    if (x.series) plot = `<h3>||grad|| of ${html(x.series.name)} over time</h3>` + linePlot(x.series.t, x.series.grad_norm, 290, 120, x.t, "info");
    el.innerHTML = `<h3>${html(x.label.split("\n")[0])}</h3><table>${rows.join("")}</table>${plot}`;
  }

  // A small log-scale line plot as SVG text; points carry data-t.
  const PLOTS = [];
  function linePlot(ts, ys, W, H, mark, cls) {
    const pts = ts.map((t, k) => [t, ys[k]]).filter(([, y]) => y !== null && Number.isFinite(y) && y > 0);
    if (!pts.length) return '<p class="hint">no finite positive gradient norms to plot</p>';
    const L = 42, R = 8, Tp = 8, B = 22;
    const t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]));
    let lo = Math.min(...pts.map((p) => Math.log10(p[1]))), hi = Math.max(...pts.map((p) => Math.log10(p[1])));
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const X = (t) => L + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - L - R) : (W - L - R) / 2);
    const Y = (y) => Tp + (1 - (Math.log10(y) - lo) / (hi - lo)) * (H - Tp - B);
    const path = pts.map(([t, y], k) => `${k ? "L" : "M"}${X(t).toFixed(1)},${Y(y).toFixed(1)}`).join("");
    const dots = pts.length <= 400
      ? pts.map(([t, y]) => `<circle class="pt${t === mark ? " hl" : ""}" data-t="${t}" cx="${X(t).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="${t === mark ? 5 : 2.5}" fill="#2b6cb0"><title>t=${t}: ${fmt(y)}</title></circle>`).join("")
      : "";
    // The mapping is kept so that a step can be marked, and the plot hovered, where there are no dots.
    const key = PLOTS.push({ X, Y, ts: pts.map((p) => p[0]), ys: new Map(pts), L, R: W - R }) - 1;
    return `<svg class="plot ${cls}" data-key="${key}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">` +
      `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#999"/><line x1="${L}" y1="${Tp}" x2="${L}" y2="${H - B}" stroke="#999"/>` +
      `<text x="${L - 4}" y="${Tp + 8}" text-anchor="end">${(10 ** hi).toExponential(0)}</text>` +
      `<text x="${L - 4}" y="${H - B}" text-anchor="end">${(10 ** lo).toExponential(0)}</text>` +
      `<text x="${L}" y="${H - 6}">t=${t0}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">t=${t1}</text>` +
      `<path d="${path}" fill="none" stroke="#2b6cb0" stroke-width="1.5"/>${dots}</svg>`;
  }

  function drawRecording() {
    if (!D.recording || !D.recording.length) return;
    const el = $("rec");
    el.hidden = false;
    el.innerHTML = D.recording.map((r) => `<h3>${html(r.label)}</h3>` + linePlot(r.t, r.norm.map(num), 290, 150, null, "rec")).join("");
  }

  function highlightStep(t, on) {
    const host = $("graph");
    host.querySelectorAll("[data-scope]").forEach((g) => {
      const s = D.scopeIndex.get(g.dataset.scope);
      if (s !== undefined && D.scopeList[s].t === t) g.classList.toggle("hl", on);
    });
    $("rec").querySelectorAll(`.pt[data-t="${t}"]`).forEach((c) => { c.classList.toggle("hl", on); c.setAttribute("r", on ? 5 : 2.5); });
    $("rec").querySelectorAll("svg.plot").forEach((svg) => {
      let m = svg.querySelector(".marker");
      const P = PLOTS[Number(svg.dataset.key)], y = P && P.ys.get(t);
      if (!on || y === undefined) { if (m) m.remove(); return; }
      if (!m) { m = document.createElementNS("http://www.w3.org/2000/svg", "circle"); m.setAttribute("class", "marker"); m.setAttribute("r", 5); m.setAttribute("fill", "#ff7f0e"); svg.appendChild(m); }
      m.setAttribute("cx", P.X(t).toFixed(1)); m.setAttribute("cy", P.Y(y).toFixed(1));
    });
  }

  function drawLegend() {
    const V = D.views[S.view];
    const cells = [];
    for (let k = 0; k < 5; k++) { const v = 10 ** (V.lo + ((V.hi - V.lo) * k) / 4); cells.push(`<span class="swatch" style="background:${colour(v, V.lo, V.hi)[0]}" title="${fmt(v)}"></span>`); }
    $("legend").innerHTML = `<h3>gradient norm (log scale)</h3>${cells.join("")} <span class="swatch" style="background:${BAD}"></span> NaN/Inf` +
      `<p class="hint">${(10 ** V.lo).toExponential(0)} .. ${(10 ** V.hi).toExponential(0)}. Grey: no gradient (or not reached yet by the replay).</p>`;
  }

  // ---------------------------------------------------------------------------------------------- search

  function search(q) {
    q = q.trim().toLowerCase();
    if (!q) return [];
    const out = [];
    for (const s of D.scopeList) if (s.id > 0 && s.path.toLowerCase().includes(q) && (s.parts[s.parts.length - 1].toLowerCase().includes(q))) {
      out.push({ what: "scope", scope: s.path, text: s.path });
      if (out.length >= 30) return out;
    }
    // Nodes: exact names first (a parameter, a tensor named "h"), then labels that contain the text.
    const V = D.views[S.view], T = D.tensors, exact = [], partial = [];
    for (let i = 0; i < V.n && exact.length < 60; i++) {
      const first = D.strings[V.nodes.label[i]].split("\n")[0];
      const ti = V.nodes.tensor[i];
      const name = (ti >= 0 ? D.strings[T.name[ti]] : "").toLowerCase();
      const hit = { what: "node", id: V.nodes.id[i], text: first, where: D.scopeList[V.scope[i]].path };
      if (name === q || name.endsWith("." + q) || first.toLowerCase() === q) exact.push(hit);
      else if (partial.length < 60 && (first.toLowerCase().includes(q) || name.includes(q))) partial.push(hit);
    }
    return out.concat(exact, partial).slice(0, 60);
  }

  async function reveal(r) {
    if (r.what === "scope") { await expand(r.scope); focus(`[data-scope="${CSS.escape(r.scope)}"]`); return; }
    const V = D.views[S.view], s = V.scope[V.byId.get(r.id)];
    if (s > 0) await expand(D.scopeList[s].path);
    focus(`[data-node="${CSS.escape(r.id)}"]`);
    showInfo(r.id);
  }

  function focus(sel, flash = true) {
    const el = $("graph").querySelector(sel);
    if (!el) return;
    // Centre the element's top in the pane (a tall cluster shows from its label down).
    const host = $("graph"), r = el.getBoundingClientRect(), hr = host.getBoundingClientRect();
    host.scrollTop += r.top - hr.top - Math.min(hr.height / 3, Math.max(0, (hr.height - r.height) / 2));
    host.scrollLeft += r.left - hr.left - Math.max(0, (hr.width - r.width) / 2);
    if (!flash) return;
    el.classList.add("hl");
    setTimeout(() => el.classList.remove("hl"), 1500);
  }

  // ---------------------------------------------------------------------------------------------- API

  function checkScope(scope, who) {
    if (typeof scope !== "string" || !D.scopeIndex.has(scope) || scope === "") {
      throw new Error(`graphExplorer.${who}: no scope ${JSON.stringify(scope)} (scopes are paths such as ${JSON.stringify(D.scopeList[D.scopeList.length - 1].path)})`);
    }
    return D.scopeIndex.get(scope);
  }

  function expand(scope) {
    let s = checkScope(scope, "expand");
    for (; s > 0; s = D.scopeList[s].parent) S.expanded.add(D.scopeList[s].path);
    // Bring what was unfolded into view.
    return render().then(() => focus(`g.cluster[data-scope="${CSS.escape(scope)}"]`, false));
  }

  function collapse(scope) {
    checkScope(scope, "collapse");
    S.expanded.delete(scope);
    return render();
  }

  function expandAll() {
    const scopes = D.scopeList.filter((s) => s.id > 0);
    const V = D.views[S.view];
    if (V.n <= UNFOLD_LIMIT) { for (const s of scopes) S.expanded.add(s.path); return render(); }
    // Too many nodes to lay out at once: unfold every module and as many steps from both ends as fit.
    for (const s of scopes) if (s.step === null && !s.block) S.expanded.add(s.path);
    const stepScopes = scopes.filter((s) => s.t !== null).sort((a, b) => a.t - b.t);
    let budget = UNFOLD_LIMIT, lo = 0, hi = stepScopes.length - 1, shown = 0;
    while (lo <= hi) {
      for (const s of lo === hi ? [stepScopes[lo]] : [stepScopes[lo], stepScopes[hi]]) {
        budget -= V.count[s.id];
        if (budget < 0) break;
        for (let a = s.id; a > 0; a = D.scopeList[a].parent) S.expanded.add(D.scopeList[a].path);
        for (const d of scopes) if (d.path.startsWith(s.path + "/")) S.expanded.add(d.path);
        shown++;
      }
      if (budget < 0) break;
      lo++; hi--;
    }
    return render().then(() => status(`unfolded ${shown} of ${stepScopes.length} steps (first and last): all ${V.n} nodes would take long to lay out; click a box to unfold it`));
  }

  function collapseAll() {
    const steps = D.scopeList.filter((s) => s.t !== null || s.block);
    if (steps.length) for (const s of steps) S.expanded.delete(s.path);
    else for (const s of D.scopeList) if (s.depth === 1) S.expanded.delete(s.path);
    return render();
  }

  function setView(v) {
    if (v !== "forward" && v !== "backward") throw new Error(`graphExplorer.setView: view must be "forward" or "backward", got ${JSON.stringify(v)}`);
    S.view = v;
    document.querySelectorAll("[data-view]").forEach((b) => b.classList.toggle("on", b.dataset.view === v));
    drawLegend();
    return render();
  }

  function setStep(t) {
    if (t !== null && !(typeof t === "number" && Number.isInteger(t))) throw new Error(`graphExplorer.setStep: t must be an integer time step or null, got ${JSON.stringify(t)}`);
    S.step = t;
    if (t !== null && D.steps.length) {
      const top = D.steps[D.steps.length - 1];
      $("step").value = String(Math.max(0, Math.min(Number($("step").max), top + 1 - t)));
    }
    applyStep();
  }

  function visibleNodes() {
    return [...$("graph").querySelectorAll("g.node[data-node]")].map((g) => g.dataset.node);
  }

  const api = {
    expand, collapse, expandAll, collapseAll, visibleNodes, info, setView, setStep, search, setZoom,
    dot: () => toDot(layoutModel()),
    get view() { return S.view; },
    get step() { return S.step; },
    get steps() { return D ? D.steps.slice() : []; },
    lastLayoutMs: null, timings: {}, ready: null,
  };
  window.graphExplorer = api;

  // ---------------------------------------------------------------------------------------------- wiring

  function wire() {
    const host = $("graph");
    host.addEventListener("click", (ev) => {
      const node = ev.target.closest("g.node[data-node]");
      if (node) {
        if (node.dataset.scope) { expand(node.dataset.scope); return; }
        host.querySelectorAll("g.pinned").forEach((g) => g.classList.remove("pinned"));
        if (S.pinned === node.dataset.node) { S.pinned = null; return; }
        S.pinned = node.dataset.node;
        node.classList.add("pinned");
        showInfo(S.pinned);
        return;
      }
      const cl = ev.target.closest("g.cluster[data-scope]");
      if (cl) collapse(cl.dataset.scope);
    });
    host.addEventListener("mouseover", (ev) => {
      const node = ev.target.closest("g.node[data-node]");
      if (node && !S.pinned) showInfo(node.dataset.node);
      const sc = ev.target.closest("[data-scope]");
      if (sc) { const s = D.scopeIndex.get(sc.dataset.scope); if (s !== undefined && D.scopeList[s].t !== null) highlightStep(D.scopeList[s].t, true); }
    });
    host.addEventListener("mouseout", (ev) => {
      const sc = ev.target.closest("[data-scope]");
      if (sc) { const s = D.scopeIndex.get(sc.dataset.scope); if (s !== undefined && D.scopeList[s].t !== null) highlightStep(D.scopeList[s].t, false); }
    });
    // Hovering a plot marks the nearest step's box (and the point); leaving it clears the mark.
    let hovered = null;
    $("rec").addEventListener("mousemove", (ev) => {
      const svg = ev.target.closest("svg.plot");
      if (!svg) return;
      const P = PLOTS[Number(svg.dataset.key)], r = svg.getBoundingClientRect(), x = ev.clientX - r.left;
      let best = null;
      for (const t of P.ts) if (best === null || Math.abs(P.X(t) - x) < Math.abs(P.X(best) - x)) best = t;
      if (best === hovered) return;
      if (hovered !== null) highlightStep(hovered, false);
      hovered = best;
      if (best !== null) highlightStep(best, true);
    });
    $("rec").addEventListener("mouseleave", () => { if (hovered !== null) highlightStep(hovered, false); hovered = null; });
    // Clicking the plot scrolls to that step (its box, or the folded block that holds it).
    $("rec").addEventListener("click", () => {
      if (hovered === null) return;
      for (const el of $("graph").querySelectorAll("[data-scope]")) {
        const sc = D.scopeList[D.scopeIndex.get(el.dataset.scope)];
        if (sc && (sc.t === hovered || (sc.block && sc.block[0] <= hovered && hovered <= sc.block[1]))) {
          focus(`[data-scope="${CSS.escape(sc.path)}"]`);
          return;
        }
      }
    });
    document.querySelectorAll("[data-view]").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
    $("fold-all").addEventListener("click", () => collapseAll());
    $("zoom-out").addEventListener("click", () => setZoom(Math.max(0.1, (api.zoom || 1) / 1.25)));
    $("zoom-in").addEventListener("click", () => setZoom(Math.min(4, (api.zoom || 1) * 1.25)));
    $("zoom-fit").addEventListener("click", () => setZoom("fit"));
    window.addEventListener("resize", () => { if (S.zoom === "fit") applyZoom(); });
    $("unfold-all").addEventListener("click", () => expandAll());
    const slider = $("step");
    if (D.steps.length) {
      slider.max = String(D.steps.length + 1);
      slider.value = slider.max;
      slider.addEventListener("input", () => {
        const v = Number(slider.value), top = D.steps[D.steps.length - 1];
        S.step = v >= Number(slider.max) ? null : top + 1 - v;
        applyStep();
      });
    } else {
      $("step-group").hidden = true;
    }
    const box = $("search"), list = $("results");
    let results = [];
    box.addEventListener("input", () => {
      results = search(box.value);
      list.innerHTML = results.map((r, k) => `<li data-k="${k}">${html(r.text)}${r.where ? `<span class="where">${html(r.where)}</span>` : ""}</li>`).join("");
      list.hidden = !results.length;
    });
    box.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && results.length) { list.hidden = true; reveal(results[0]); } if (ev.key === "Escape") list.hidden = true; });
    list.addEventListener("click", (ev) => { const li = ev.target.closest("li"); if (li) { list.hidden = true; reveal(results[Number(li.dataset.k)]); } });
  }

  async function main() {
    const t0 = performance.now();
    try {
      D = prepare(await load());
      api.timings.decode = performance.now() - t0;
      const t1 = performance.now();
      viz = await Viz.instance();
      api.timings.wasm = performance.now() - t1;
      $("title").textContent = `graph explorer: ${D.views.forward.n} forward / ${D.views.backward.n} backward nodes`;
      initialFold();
      S.view = D.view === "backward" ? "backward" : "forward";
      document.querySelectorAll("[data-view]").forEach((b) => b.classList.toggle("on", b.dataset.view === S.view));
      wire();
      drawLegend();
      drawRecording();
      const t2 = performance.now();
      await render();
      api.timings.firstLayout = performance.now() - t2;
      api.timings.total = performance.now() - t0;
    } catch (e) {
      status(`error: ${e && e.message ? e.message : e}`, true);
      throw e;
    }
  }
  api.ready = main();
})();
