// pykernel HMI: live view of one system through the control surface.
// Data arrives as `status` Server-Sent Events from /api/stream; modifies use the bearer token
// the operator pastes (kept in sessionStorage, or given as #token=... in the URL).
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("pykernel-token") || "";
let lastDiagramKey = "";
let lastDiagramAt = 0;
let lastDiagramCost = 0;
let connectomeVersion = -1;
let diagramBusy = false;
let latestKey = "";
const EVENTS_SHOWN = 200;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function rate(v, unit) {
  for (const [f, p] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (v >= f) return (v / f).toFixed(1) + " " + p + unit;
  }
  return (v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + unit;
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  return s < 60 ? s.toFixed(0) + " s" : s < 3600 ? (s / 60).toFixed(0) + " min" : (s / 3600).toFixed(1) + " h";
}

function say(text, isError) {
  const m = $("#message");
  m.textContent = text;
  m.className = isError ? "error" : "";
}

async function modify(method, path, body) {
  if (!token) { say("paste the operator token first", true); return null; }
  const opts = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = data.error || {};
    say(`${method} ${path}: ${resp.status} ${e.message || ""}`, true);
    return null;
  }
  say(`${method} ${path}: done`, false);
  return data;
}

function button(label, cls, onClick) {
  const b = el("button", { type: "button", class: "modify " + cls }, label);
  b.disabled = !token;
  b.addEventListener("click", onClick);
  return b;
}

// Rows are keyed and updated in place, so a button under the pointer survives the
// several updates a second (re-creating rows would swallow clicks).
function syncRows(body, items, key, build, update) {
  const old = new Map([...body.children].map((tr) => [tr.dataset.key, tr]));
  let prev = null;
  for (const item of items) {
    let tr = old.get(key(item));
    if (tr) old.delete(key(item));
    else { tr = build(item); tr.dataset.key = key(item); }
    update(tr, item);
    const want = prev ? prev.nextSibling : body.firstChild;
    if (want !== tr) body.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of old.values()) tr.remove();
}

function setCell(td, text, attrs) {
  if (td.textContent !== text) td.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) if (td.getAttribute(k) !== v) td.setAttribute(k, v);
}

function renderServers(servers) {
  syncRows($("#servers tbody"), servers, (s) => s.name, (s) => {
    const tr = el("tr", { "data-server": s.name });
    tr.append(el("td", { class: "name" }, s.name), el("td", { class: "state" }),
      el("td", { class: "num pid" }), el("td", { class: "num starts" }),
      el("td", { class: "num since" }));
    const ops = el("td", { class: "ops" });
    const enc = encodeURIComponent(s.name);
    ops.append(button("start", "start", () => modify("POST", `/api/servers/${enc}/start`)));
    ops.append(button("stop", "stop", () => modify("POST", `/api/servers/${enc}/stop`)));
    ops.append(button("restart", "restart", () => modify("POST", `/api/servers/${enc}/restart`)));
    tr.append(ops);
    return tr;
  }, (tr, s) => {
    const td = tr.children;
    setCell(td[1], s.state, { "data-state": s.state });
    setCell(td[2], s.pid == null ? "" : String(s.pid));
    setCell(td[3], String(s.starts));
    setCell(td[4], ago(s.since));
  });
}

function renderConnections(conns) {
  syncRows($("#connections tbody"), conns, (c) => c.id, (c) => {
    const tr = el("tr", { "data-connection": c.id, "data-source": c.source, "data-target": c.target });
    tr.append(el("td", { class: "id" }, c.id), el("td", {}, `${c.source} → ${c.target}`),
      el("td", {}, c.pipe), el("td", { class: "state" }), el("td", { class: "num rate" }),
      el("td", { class: "num brate" }), el("td", { class: "num fill" }),
      el("td", { class: "num drops" }), el("td", { class: "num waits" }));
    const ops = el("td", { class: "ops" });
    ops.append(button("disconnect", "disconnect", () =>
      modify("DELETE", `/api/connections/${encodeURIComponent(c.id)}`)));
    tr.append(ops);
    return tr;
  }, (tr, c) => {
    const td = tr.children;
    const f = c.flow;
    setCell(td[3], c.state, { "data-state": c.state });
    setCell(td[4], rate(f.msgs_per_s, "msg/s"), { "data-value": String(f.msgs_per_s) });
    setCell(td[5], rate(f.bytes_per_s, "B/s"));
    setCell(td[6], f.fill_pct.toFixed(1));
    setCell(td[7], String(f.drops));
    setCell(td[8], String(f.writer_waits));
  });
}

function renderEvents(events) {
  const list = $("#events");
  for (const e of events) {
    const when = new Date(e.time * 1000).toISOString().slice(11, 23);
    const move = e.from ? `${e.from} → ${e.to}` : e.to;
    list.prepend(el("li", { "data-seq": String(e.seq), "data-kind": e.kind },
      `${when} ${e.kind} ${e.subject}: ${move} (${e.cause})`));
  }
  while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
}

async function refreshTerminals() {
  const resp = await fetch("/api/terminals");
  if (!resp.ok) return;
  const terms = await resp.json();
  const fill = (sel, dirs) => {
    const keep = $(sel).value;
    $(sel).replaceChildren(...terms.filter((t) => dirs.includes(t.direction))
      .map((t) => el("option", { value: t.id }, `${t.id} (${t.direction})`)));
    if (keep) $(sel).value = keep;
  };
  fill("#connect-source", ["output", "multiplexer"]);
  fill("#connect-target", ["input", "combiner"]);
}

let diagramTimer = null;

async function refreshDiagram(key) {
  // Redraw soon (0.5 s) when states or the structure change, every 2 s for new rates, and
  // always once more after a burst, so the last state is the one drawn. Graphviz runs on
  // the server for each redraw, so bursts of changes must not become bursts of redraws.
  // A big system takes Graphviz a while: never spend more than ~1/10 of the time drawing.
  const every = Math.max(2000, 10 * lastDiagramCost);
  const wait = (key !== lastDiagramKey ? 500 : every) - (Date.now() - lastDiagramAt);
  if (diagramBusy || wait > 0) {
    if (!diagramTimer) {
      diagramTimer = setTimeout(() => { diagramTimer = null; refreshDiagram(latestKey); },
        Math.max(wait, 50));
    }
    return;
  }
  diagramBusy = true;
  const began = Date.now();
  try {
    const resp = await fetch("/api/graph?format=svg");
    const box = $("#diagram");
    if (resp.ok) {
      box.innerHTML = await resp.text();  // produced by Graphviz from our own data
    } else {
      const dot = await fetch("/api/graph?format=dot");
      box.replaceChildren(el("pre", {}, await dot.text()));
    }
    box.setAttribute("data-key", key);
    lastDiagramKey = key;
    lastDiagramAt = Date.now();
    lastDiagramCost = lastDiagramAt - began;
  } finally {
    diagramBusy = false;
  }
}

function onStatus(msg) {
  const d = JSON.parse(msg.data);
  const sys = d.system;
  $("#system").textContent = sys.system;
  $("#kernel-state").textContent = sys.state;
  $("#kernel-state").dataset.state = sys.state;
  $("#connectome-id").textContent = sys.connectome.id.slice(0, 12);
  $("#connectome-version").textContent = String(sys.connectome.version);
  renderServers(d.servers);
  renderConnections(d.connections);
  renderEvents(d.events);
  if (sys.connectome.version !== connectomeVersion) {
    connectomeVersion = sys.connectome.version;
    refreshTerminals();
  }
  const key = [sys.connectome.version, ...d.servers.map((s) => s.state),
    ...d.connections.map((c) => c.state)].join(",");
  latestKey = key;
  refreshDiagram(key);
}

function setToken(value) {
  token = value.trim();
  if (token) sessionStorage.setItem("pykernel-token", token);
  $("#token-state").textContent = token ? "operator" : "read-only";
  for (const b of document.querySelectorAll("button.modify")) b.disabled = !token;
}

function start() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    setToken(hash.get("token"));
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  } else {
    setToken(token);
  }
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("#token").value);
    $("#token").value = "";
  });
  $("#connect-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    modify("POST", "/api/connections", { source: $("#connect-source").value, target: $("#connect-target").value });
  });
  const stream = new EventSource("/api/stream");
  stream.addEventListener("status", onStatus);
  stream.addEventListener("open", () => { $("#live").textContent = "live"; $("#live").dataset.live = "yes"; });
  stream.addEventListener("error", () => { $("#live").textContent = "reconnecting…"; $("#live").dataset.live = "no"; });
}

start();
