"use strict";
// Settings from Python: JSON with <, > and & escaped, so no value can end this script element.
const CONFIG = __CONFIG__;
// The SVG namespace is an identifier that createElementNS needs, not a resource: nothing is fetched.
const SVG_NS = "http://www.w3.org/2000/svg";
// Chart geometry in viewBox units; each SVG scales to the width of its place in the card.
const W = 340, H = 214;
const P = {x0: 46, x1: W - 12, y0: 36, y1: H - 48};  // the plot area; y1 is the baseline

// ---- DOM helpers. Attributes go through setAttribute and text through text nodes: nothing from the
// stats is ever parsed as markup, so a task name that looks like an HTML tag is shown, not run.
function build(node, attrs, kids) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  }
  for (const kid of kids) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return node;
}
const h = (tag, attrs, ...kids) => build(document.createElement(tag), attrs, kids);
const s = (tag, attrs, ...kids) => build(document.createElementNS(SVG_NS, tag), attrs, kids);
function setText(id, text) { document.getElementById(id).textContent = text; }

// ---- Formatting. Any number in the stats may be null (no data yet); it shows as an em dash.
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const list = (v) => (Array.isArray(v) ? v : []);
const str = (v, dflt = "—") => (v === null || v === undefined || v === "" ? dflt : String(v));
function fmt(v, digits = 0, unit = "") { v = num(v); return v === null ? "—" : v.toFixed(digits) + unit; }
function pct(v, digits = 0) { v = num(v); return v === null ? "—" : (100 * v).toFixed(digits) + "%"; }
function signed(v, digits = 3) {
  v = num(v);
  return v === null ? "—" : (v > 0 ? "+" : "") + v.toFixed(digits);
}
function pval(p) { p = num(p); return p === null ? "—" : p < 0.001 ? "<0.001" : p.toFixed(3); }
const ver = (v) => (v === null || v === undefined ? "—" : "v" + v);
function clock(date) { return date.toTimeString().slice(0, 8); }  // local HH:MM:SS
function minute(t) { t = num(t); return t === null ? "" : new Date(t * 1000).toISOString().slice(11, 16); }
function duration(sec) {
  sec = num(sec);
  if (sec === null) return "—";
  const d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24;
  const m = Math.floor(sec / 60) % 60, x = Math.floor(sec % 60);
  const two = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d ${two(hr)}h`;
  if (hr) return `${hr}h ${two(m)}m`;
  return m ? `${m}m ${two(x)}s` : `${x}s`;
}
function shorten(text, max) { return text.length <= max ? text : text.slice(0, Math.max(1, max - 1)) + "…"; }

// Ids: the task name with every character outside [A-Za-z0-9_-] replaced by "_" (dom_id() in Python);
// the "u" flag makes that one "_" per character, not per UTF-16 half of an emoji, as in Python.
function domId(name) { return String(name ?? "").replace(/[^A-Za-z0-9_-]/gu, "_"); }

// ---- Scales and the chart frame.
// "Nice" y ticks: from 0 to a round top at or above max, in steps of 1, 2, 2.5 or 5 × 10^k.
function niceTicks(max, n = 4) {
  if (!(max > 0)) max = 1;
  const raw = max / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((st) => st >= raw * (1 - 1e-9));
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let i = 0; i * step <= top + step / 2; i++) ticks.push(+(i * step).toPrecision(12));
  return {ticks, top};
}
const yAt = (v, top) => P.y1 - (Math.min(v, top) / top) * (P.y1 - P.y0);
// n equal slots across the plot (one per minute, version or label); at(i) is the centre of slot i.
function slots(n) {
  const w = (P.x1 - P.x0) / Math.max(1, n);
  return {w, at: (i) => P.x0 + w * (i + 0.5)};
}

// An <svg role="img"> with its title (visible and as <title>) and both axis labels.
function frame(id, title, xLabel, yLabel) {
  const midY = (P.y0 + P.y1) / 2;
  return s("svg", {id, class: "chart", role: "img", "aria-label": title, viewBox: `0 0 ${W} ${H}`},
    s("title", {}, title),
    s("text", {class: "c-title", x: 4, y: 15}, title),
    s("text", {class: "a-label", x: (P.x0 + P.x1) / 2, y: H - 5, "text-anchor": "middle"}, xLabel),
    s("text", {class: "a-label", transform: `translate(11 ${midY}) rotate(-90)`, "text-anchor": "middle"},
      yLabel));
}

// The y axis with gridlines at `ticks` (the last is the top of the scale), and the baseline.
function axis(svg, ticks, fmtTick) {
  const top = ticks[ticks.length - 1];
  for (const v of ticks) {
    const y = yAt(v, top);
    svg.append(
      s("line", {class: v === 0 ? "axis" : "grid", x1: P.x0, x2: P.x1, y1: y, y2: y}),
      s("text", {class: "tick", x: P.x0 - 5, y: y + 3.5, "text-anchor": "end"}, fmtTick(v)));
  }
  svg.append(s("line", {class: "axis", x1: P.x0, x2: P.x0, y1: P.y0, y2: P.y1}));
  return top;
}

// Labels under the x axis, one or two lines each. With many slots only every k-th is shown, counted
// back from the last, so that they do not overlap and the newest minute is always labelled.
function xLabels(svg, labels, at, maxShown = 6) {
  const n = labels.length, every = Math.max(1, Math.ceil(n / maxShown));
  labels.forEach((lab, i) => {
    if ((n - 1 - i) % every !== 0) return;
    (Array.isArray(lab) ? lab : [lab]).forEach((line, k) => svg.append(s("text",
      {class: k ? "tick sub" : "tick", x: at(i), y: P.y1 + 14 + 12 * k, "text-anchor": "middle"}, line)));
  });
}

// Bars: one <rect class="data ..."> per item with a <title> tooltip; a null or 0 value draws nothing.
function bars(svg, items, top) {
  for (const it of items) {
    const v = num(it.value);
    if (v === null || v <= 0) continue;
    const height = Math.max(P.y1 - yAt(v, top), 1);  // a small count stays visible
    svg.append(s("rect", {class: "data " + it.cls, x: it.x - it.w / 2, y: P.y1 - height, width: it.w, height,
      fill: it.fill}, s("title", {}, it.tip)));
  }
}

// Lines: one <polyline> per run of non-null points (a minute without data breaks the line rather than
// dropping it to 0), and a dot per point when there are few enough to see, or when it stands alone.
function lines(svg, series, at, top) {
  for (const ser of series) {
    const vals = ser.values.map(num);
    let run = [];
    const flush = () => {
      if (run.length > 1) svg.append(s("polyline", {class: "data line " + ser.cls, points: run.join(" ")}));
      run = [];
    };
    vals.forEach((v, i) => {
      if (v === null) { flush(); return; }
      run.push(`${at(i).toFixed(1)},${yAt(v, top).toFixed(1)}`);
    });
    flush();
    vals.forEach((v, i) => {
      const alone = vals[i - 1] == null && vals[i + 1] == null;
      if (v !== null && (vals.length <= 30 || alone)) {
        svg.append(s("circle", {class: "data pt " + ser.cls, cx: at(i), cy: yAt(v, top), r: 2.2},
          s("title", {}, ser.tip(i))));
      }
    });
  }
}

// A legend at the top right: a swatch and a label per entry.
function legend(svg, entries) {
  let x = P.x1;
  for (const e of [...entries].reverse()) {
    // The label's width is estimated (about 6.8 units a character at 11 px): the SVG is not in the
    // document yet, so it cannot be measured.
    svg.append(s("text", {class: "tick", x, y: P.y0 - 8, "text-anchor": "end"}, e.label));
    x -= 6.8 * e.label.length + 5;
    svg.append(s("rect", {class: "swatch " + e.cls, x: x - 9, y: P.y0 - 16, width: 9, height: 9, rx: 1.5}));
    x -= 9 + 14;
  }
}

// The empty state: the bare axes and a message where the data would be.
function emptyState(svg, message) {
  svg.append(
    s("line", {class: "axis", x1: P.x0, x2: P.x1, y1: P.y1, y2: P.y1}),
    s("line", {class: "axis", x1: P.x0, x2: P.x0, y1: P.y0, y2: P.y1}),
    s("text", {class: "empty", x: (P.x0 + P.x1) / 2, y: (P.y0 + P.y1) / 2 + 4, "text-anchor": "middle"},
      message));
  svg.setAttribute("aria-label", `${svg.getAttribute("aria-label")}: ${message}`);
  return svg;
}

// The server lists only the minutes that had requests. Fill the gaps so that the x axis is real time:
// a missing minute gets `gap` (0 requests, no latency). Minutes not on a 60 s grid are used as given.
function byMinute(perMinute, gap) {
  const pm = list(perMinute).filter((p) => p && typeof p === "object");
  const ts = pm.map((p) => num(p.t));
  if (!pm.length || ts.some((t) => t === null)) return pm;
  const first = Math.min(...ts), n = Math.round((Math.max(...ts) - first) / 60) + 1;
  if (n > 1440 || ts.some((t) => (t - first) % 60 !== 0)) return pm;
  const seen = new Map(pm.map((p) => [p.t, p]));
  return Array.from({length: n}, (_, i) => seen.get(first + 60 * i) || {...gap, t: first + 60 * i});
}

const figure = (svg, caption) => h("figure", {}, svg, h("figcaption", {}, caption || ""));

// ---- The four charts of a task card.
function trafficChart(id, traffic) {
  const svg = frame(id, "Requests per minute", "minute (UTC)", "requests / min");
  const pm = byMinute(traffic?.per_minute, {count: 0});
  const counts = pm.map((p) => num(p.count));
  const windowTotal = counts.reduce((a, c) => a + (c || 0), 0);
  const caption = `${fmt(traffic?.total)} requests since start`;
  if (!(windowTotal > 0)) {
    const message = num(traffic?.total) > 0 ? "no traffic in this window" : "no traffic yet";
    return figure(emptyState(svg, message), caption);
  }
  const {ticks, top} = niceTicks(Math.max(...counts.map((c) => c || 0)));
  axis(svg, ticks, (v) => String(v));
  const {w, at} = slots(pm.length);
  bars(svg, pm.map((p, i) => ({x: at(i), w: Math.min(w * 0.8, 28), value: counts[i], cls: "traffic",
    tip: `${minute(p.t)} UTC: ${fmt(counts[i])} requests`})), top);
  xLabels(svg, pm.map((p) => minute(p.t)), at);
  svg.setAttribute("aria-label", `Requests per minute: ${windowTotal} in the last ${pm.length} minutes`);
  return figure(svg, caption);
}

function latencyChart(id, latency) {
  const svg = frame(id, "Latency per minute", "minute (UTC)", "latency (ms)");
  const pm = byMinute(latency?.per_minute, {p50: null, p99: null});
  const p50 = pm.map((p) => num(p.p50)), p99 = pm.map((p) => num(p.p99));
  const caption = `overall p50 ${fmt(latency?.p50, 1, " ms")} · p95 ${fmt(latency?.p95, 1, " ms")}` +
    ` · p99 ${fmt(latency?.p99, 1, " ms")}`;
  const seen = [...p50, ...p99].filter((v) => v !== null);
  if (!seen.length) return figure(emptyState(svg, "no traffic yet"), caption);
  const {ticks, top} = niceTicks(Math.max(...seen));
  axis(svg, ticks, (v) => String(v));
  const {at} = slots(pm.length);
  const tip = (name, vals) => (i) => `${minute(pm[i].t)} UTC ${name} ${fmt(vals[i], 1, " ms")}`;
  lines(svg, [
    {values: p50, cls: "p50", tip: tip("p50", p50)},
    {values: p99, cls: "p99", tip: tip("p99", p99)},
  ], at, top);
  legend(svg, [{label: "p50", cls: "p50"}, {label: "p99", cls: "p99"}]);
  xLabels(svg, pm.map((p) => minute(p.t)), at);
  svg.setAttribute("aria-label", `Latency per minute, p50 and p99; ${caption}`);
  return figure(svg, caption);
}

function accuracyChart(id, live, active, ab) {
  const svg = frame(id, "Live accuracy per version", "version", "accuracy");
  const rows = list(live).filter((r) => r && typeof r === "object");
  if (!rows.length) return figure(emptyState(svg, "no feedback yet"), "accuracy on labelled feedback");
  axis(svg, [0, 0.25, 0.5, 0.75, 1], (v) => v.toFixed(2));
  const {w, at} = slots(rows.length);
  const bw = Math.min(w * 0.6, 56);
  // Hatching for versions without an accuracy yet; the pattern id is unique as the chart id is.
  const hatch = id + "-hatch";
  if (rows.some((r) => num(r.accuracy) === null)) {
    svg.append(s("defs", {}, s("pattern", {id: hatch, width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)"}, s("rect", {class: "hatch-bg", width: 6, height: 6}),
      s("line", {class: "hatch-line", x1: 0, y1: 0, x2: 0, y2: 6}))));
  }
  const role = (v) =>
    (ab && v === ab.a ? " · A" : ab && v === ab.b ? " · B" : v === active ? " · active" : "");
  rows.forEach((r, i) => {
    const acc = num(r.accuracy), n = num(r.n_feedback), x = at(i);
    if (acc !== null) {
      // Fewer labels than the A/B test needs (30): drawn paler, as the number is still noisy.
      const cls = "acc-bar" + (r.version === active ? " active" : "") + (n !== null && n < 30 ? " few" : "");
      const tip = `${ver(r.version)}: accuracy ${acc.toFixed(3)} on ${fmt(n)} feedback labels`;
      bars(svg, [{x, w: bw, value: acc, cls, tip}], 1);
      svg.append(s("text", {class: "value halo", x, y: yAt(acc, 1) - 4, "text-anchor": "middle"},
        acc.toFixed(2)));
    } else {
      // Not enough feedback for an accuracy: a full-height hatched placeholder, so it reads as "unknown"
      // and not as 0. The server needs 30 labels before it reports one.
      const why = n ? "n<30" : "no feedback";
      svg.append(s("rect", {class: "data pending-bar", x: x - bw / 2, y: P.y0, width: bw, height: P.y1 - P.y0,
        fill: `url(#${hatch})`},
        s("title", {}, `${ver(r.version)}: ${fmt(n)} feedback labels, no accuracy yet`)));
      svg.append(s("text", {class: "value halo", x, y: (P.y0 + P.y1) / 2, "text-anchor": "middle"}, why));
    }
  });
  xLabels(svg, rows.map((r) => [ver(r.version) + role(r.version), `n=${fmt(r.n_feedback)}`]), at);
  const summary = rows.map((r) => `${ver(r.version)} ${fmt(r.accuracy, 2)} (n=${fmt(r.n_feedback)})`)
    .join(", ");
  svg.setAttribute("aria-label", `Live accuracy per version: ${summary}`);
  return figure(svg, "accuracy on labelled feedback; hatched: too few labels yet");
}

function labelsChart(id, labels, mix) {
  const svg = frame(id, "Label mix: live vs reference", "label", "share");
  const names = list(labels).map((l) => str(l, "?"));
  // Proportions per label; a side with no counts at all is left out.
  const share = (counts) => {
    const xs = names.map((_, i) => num(list(counts)[i]) || 0);
    const total = xs.reduce((a, v) => a + v, 0);
    return total > 0 ? xs.map((v) => v / total) : null;
  };
  const live = share(mix?.live), ref = share(mix?.reference);
  const caption = "share of predictions per label, live traffic against the reference set";
  if (!names.length || (!live && !ref)) return figure(emptyState(svg, "no traffic yet"), caption);
  const {ticks, top} = niceTicks(Math.max(...(live || []), ...(ref || [])));
  // As many digits as the step needs: 0-dp percents labelled 0.5 % steps "0% 1% 1% 2%".
  axis(svg, ticks, (v) => +(100 * v).toPrecision(3) + "%");
  const {w, at} = slots(names.length);
  const bw = Math.min(w * 0.36, 26);
  names.forEach((name, i) => bars(svg, [
    live && {x: at(i) - bw / 2 - 1, w: bw, value: live[i], cls: "live",
      tip: `${name}: live ${pct(live[i], 1)}`},
    ref && {x: at(i) + bw / 2 + 1, w: bw, value: ref[i], cls: "reference",
      tip: `${name}: reference ${pct(ref[i], 1)}`},
  ].filter(Boolean), top));
  legend(svg, [{label: "live", cls: "live"}, {label: "reference", cls: "reference"}]);
  if (!live) svg.append(s("text", {class: "empty", x: P.x0 + 6, y: P.y0 + 12}, "no live traffic yet"));
  // Long labels are cut to fit their slot; the bars' tooltips carry the full name.
  xLabels(svg, names.map((name) => shorten(name, Math.max(4, Math.floor(w / 6.5)))), at, 12);
  svg.setAttribute("aria-label", "Label mix: " + names.map((n, i) =>
    `${n} live ${pct(live?.[i])} reference ${pct(ref?.[i])}`).join(", "));
  return figure(svg, caption);
}

// ---- Drift and A/B boxes. States map to a colour class through a Map, never by using the string itself.
const DRIFT = new Map([["ok", "good"], ["drift", "bad"], ["insufficient data", "unknown"]]);
const VERDICT = new Map([["A better", "good"], ["B better", "good"], ["no significant difference", "neutral"],
  ["insufficient data", "unknown"]]);
const tone = (map, state) => map.get(state) || "unknown";

function driftBox(id, drift) {
  const state = str(drift?.state, "insufficient data");
  const signals = list(drift?.signals).filter((x) => x && typeof x === "object");
  return h("div", {id, class: "box drift " + tone(DRIFT, state)},
    h("div", {class: "box-head"}, h("span", {class: "box-title"}, "Drift"),
      h("span", {class: "badge " + tone(DRIFT, state)}, state)),
    signals.length
      ? h("ul", {class: "signals"}, ...signals.map((sig) => h("li", {},
          h("span", {class: "sdot " + tone(DRIFT, sig.state)}),
          h("b", {}, str(sig.name, "?")), ` ${str(sig.state)} · p ${pval(sig.p_value)}`,
          sig.detail ? h("span", {class: "detail"}, str(sig.detail)) : null)))
      : h("p", {class: "muted"}, "no drift signals yet"));
}

function abBox(id, ab) {
  if (!ab || typeof ab !== "object") {
    return h("div", {id, class: "box ab unknown"},
      h("div", {class: "box-head"}, h("span", {class: "box-title"}, "A/B"),
        h("span", {class: "badge"}, "no A/B test")));
  }
  const v = ab.verdict || {};
  const state = str(v.state, "insufficient data");
  return h("div", {id, class: "box ab " + tone(VERDICT, state)},
    h("div", {class: "box-head"}, h("span", {class: "box-title"}, "A/B"),
      h("span", {class: "badge " + tone(VERDICT, state)}, state)),
    h("p", {}, `A = ${ver(ab.a)} · B = ${ver(ab.b)} · ${pct(ab.share_b)} of traffic to B`),
    h("p", {class: "nums"}, `accuracy A ${fmt(v.acc_a, 3)} (n=${fmt(v.n_a)}) · B ${fmt(v.acc_b, 3)}` +
      ` (n=${fmt(v.n_b)}) · difference ${signed(v.difference)} · p ${pval(v.p_value)}`),
    v.recommendation ? h("p", {class: "muted"}, str(v.recommendation)) : null);
}

function card(t, sid) {
  const sub = [str(t.backbone), str(t.route), "active " + ver(t.active_version)].join(" · ");
  return h("section", {id: "task-" + sid, class: "card", "aria-label": "task " + str(t.task, "")},
    h("div", {class: "card-head"}, h("h2", {}, str(t.task, "(unnamed)")), h("span", {class: "sub"}, sub),
      h("span", {class: "total"}, h("b", {}, fmt(t.traffic?.total)), " requests")),
    h("div", {class: "status-row"}, driftBox("drift-" + sid, t.drift), abBox("ab-" + sid, t.ab)),
    h("div", {class: "charts"},
      trafficChart("chart-traffic-" + sid, t.traffic),
      latencyChart("chart-latency-" + sid, t.latency_ms),
      accuracyChart("chart-accuracy-" + sid, t.live_accuracy, t.active_version, t.ab),
      labelsChart("chart-labels-" + sid, t.labels, t.label_mix)));
}

// ---- Rendering and polling.
function renderHeader(stats) {
  setText("uptime", duration(stats.uptime_s));
  const q = stats.queue || {}, depth = num(q.depth), cap = num(q.capacity);
  setText("queue", `${fmt(depth)} / ${fmt(cap)}`);
  const fill = document.getElementById("queue-fill");
  const ratio = depth !== null && cap ? Math.min(1, depth / cap) : 0;
  fill.style.width = (100 * ratio).toFixed(1) + "%";  // CSSOM, which the CSP does not restrict
  fill.className = ratio > 0.8 ? "hot" : "";
  setText("generated", str(stats.generated));
}

function render(stats) {
  if (!stats || typeof stats !== "object") throw new Error("stats are not a JSON object");
  const tasks = list(stats.tasks).filter((t) => t && typeof t === "object");
  // Build the whole new content first and swap it in at the end: if the stats are malformed, the
  // exception leaves the last good rendering on screen and the poller shows the error banner.
  let content;
  if (!tasks.length) {
    content = [h("p", {class: "placeholder", id: "no-tasks"},
      "No tasks loaded: the server has no adaptation to serve yet.")];
  } else {
    const used = new Set();
    content = tasks.map((t) => {
      // Two names that map to one id: the later get -2, -3, ..., skipping any id already handed out
      // (tasks "a.b", "a_b" and "a_b-2" would otherwise share "a_b-2").
      const base = domId(t.task);
      let sid = base;
      for (let k = 2; used.has(sid); k++) sid = base + "-" + k;
      used.add(sid);
      return card(t, sid);
    });
  }
  renderHeader(stats);
  document.getElementById("tasks").replaceChildren(...content);
}

let lastGood = null;

async function poll() {
  try {
    // A request that never answers must not freeze the page on old figures without a word: it is
    // aborted after three refresh periods (at least 5 s) and reported like any failure.
    const timeout = Math.max(5000, 3 * CONFIG.refreshMs);
    const resp = await fetch(CONFIG.statsUrl, {
      cache: "no-store",
      headers: {accept: "application/json"},
      signal: AbortSignal.timeout(timeout),
    });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
    lastGood = new Date();
    setText("updated", clock(lastGood));
    document.getElementById("error").hidden = true;
  } catch (err) {
    // Keep the last data on screen and say since when it is stale.
    const banner = document.getElementById("error");
    const since = lastGood ? `showing the data from ${clock(lastGood)}` : "no data yet";
    const why = err && err.message ? err.message : String(err);
    banner.textContent = `Could not update the stats at ${clock(new Date())} (${why}); ${since}.`;
    banner.hidden = false;
  } finally {
    // The next poll is timed from the end of this one, so a slow server never gets overlapping requests.
    setTimeout(poll, CONFIG.refreshMs);
  }
}

poll();
