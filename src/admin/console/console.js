// The login-node operator console. Plain browser JavaScript, no build step, no libraries.
// Every request goes to this node's admin API with the bearer token in the Authorization
// header; data from the cluster is only ever put into the page as text (never as HTML).
"use strict";

const PAGE_SIZE = 50;
const OVERVIEW_EVERY_MS = 3000;
const PAGE_EVERY_MS = 5000;
const TOKEN_KEY = "login-node-token";

const state = {
  token: null,
  access: null,
  page: "overview",
  nodes: { nodes: [], total: 0, matched: 0 },
  nodesPage: 0,
  whitelist: { version: 0, entries: [] },
  whitelistPage: 0,
  timers: [],
  busy: false,
  again: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = JSON.parse(text);
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : text || response.statusText;
    if (response.status === 401) signOut("The token was refused: " + message);
    throw new ApiError(response.status, message);
  }
  return data === null ? text : data;
}

// ---- messages and confirmation ----

let messageTimer = null;
function showMessage(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = "message " + (kind || "info");
  box.hidden = false;
  clearTimeout(messageTimer);
  if (kind !== "error") messageTimer = setTimeout(() => (box.hidden = true), 6000);
}

// Resolves to null when cancelled, else to the input's value ("" without an input).
function ask(text, input) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  const field = $("confirm-input");
  const label = $("confirm-label");
  field.hidden = label.hidden = !input;
  field.value = input && input.value !== undefined ? String(input.value) : "";
  label.textContent = input ? input.label : "";
  return new Promise((resolve) => {
    const done = (value) => {
      $("confirm-ok").onclick = $("confirm-cancel").onclick = null;
      dialog.close();
      resolve(value);
    };
    $("confirm-form").onsubmit = (e) => {
      e.preventDefault();
      done(field.value.trim());
    };
    $("confirm-cancel").onclick = () => done(null);
    dialog.oncancel = () => done(null);
    dialog.showModal();
    (input ? field : $("confirm-ok")).focus();
  });
}

// Asks, then runs one write; shows the API's error text when it fails.
// The node decides what a token may do: in read-only mode the buttons are disabled, and a
// write that is tried anyway shows the node's refusal.
async function write(question, describe, run, input) {
  const answer = await ask(question, input);
  if (answer === null) return;
  try {
    const result = await run(answer);
    showMessage(describe + ": done" + (result ? " (" + result + ")" : ""), "ok");
  } catch (e) {
    showMessage(describe + " failed: " + (e.status ? e.status + " " : "") + e.message, "error");
  }
  refreshPage();
}

// ---- formatting ----

function when(unixSeconds) {
  if (!unixSeconds) return "";
  const d = new Date(unixSeconds * 1000);
  return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function statusOf(node) {
  return node.waiting ? "waiting" : node.status || "";
}

function statusBadge(status) {
  return el("span", { class: "status status-" + status, text: status });
}

// ---- metrics ----

function parseMetrics(text) {
  const values = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

function histogram(values, name) {
  const count = values.get(name + "_count") || 0;
  const sum = values.get(name + "_sum") || 0;
  const buckets = [];
  for (const [key, v] of values) {
    const m = key.match(/^(.*)_bucket\{le="([^"]+)"\}$/);
    if (m && m[1] === name) buckets.push([m[2] === "+Inf" ? Infinity : Number(m[2]), v]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const quantile = (q) => {
    const want = q * count;
    for (const [le, cumulative] of buckets) if (cumulative >= want) return le;
    return Infinity;
  };
  return { count, mean: count ? sum / count : 0, p99: count ? quantile(0.99) : 0 };
}

function ms(seconds) {
  if (!isFinite(seconds)) return "> largest bucket";
  const v = seconds * 1000;
  return (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms";
}

function card(title, value, detail, id) {
  return el("div", { class: "card", "data-card": id }, el("div", { class: "card-title", text: title }),
    el("div", { class: "card-value", text: value }), el("div", { class: "card-detail muted", text: detail || "" }));
}

async function refreshOverview() {
  const [health, metricsText] = await Promise.all([
    fetch("/healthz", { cache: "no-store" }).then((r) => r.json()),
    fetch("/metrics", { cache: "no-store" }).then((r) => r.text()),
  ]);
  const m = parseMetrics(metricsText);
  const loop = histogram(m, "login_node_loop_turn_seconds");
  const fsync = histogram(m, "login_node_journal_fsync_seconds");
  const games = m.get('login_node_nodes_online{type="game"}') || 0;
  const crosses = m.get('login_node_nodes_online{type="cross"}') || 0;
  let waiting = 0;
  for (const [k, v] of m) if (k.startsWith("login_node_waiting_game_nodes{")) waiting += v;
  $("overview-cards").replaceChildren(
    card("Role", health.role || "single", health.group ? "group " + JSON.stringify(health.group) : "no failover group", "role"),
    card("State", health.status, health.state_writable ? "journal writable" : "journal NOT writable", "state"),
    card("Connections", String(m.get("login_node_connections_open") || 0), "TCP connections on the node port", "connections"),
    card("Game nodes online", String(games), waiting + " waiting for a cross slot", "games"),
    card("Cross nodes online", String(crosses), "", "crosses"),
    card("Loop turn", ms(loop.mean), "mean; p99 \u2264 " + ms(loop.p99) + " over " + loop.count + " turns", "loop"),
    card("Journal fsync", fsync.count ? ms(fsync.mean) : "none yet", fsync.count ? "mean; p99 \u2264 " + ms(fsync.p99) + " over " + fsync.count : "", "fsync"),
    card("Whitelist", String(m.get("login_node_whitelist_entries") || 0) + " entries", "version " + (m.get("login_node_whitelist_version") || 0), "whitelist"),
  );
  $("overview-updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---- game nodes ----

function crossCell(node) {
  if (node.assignment) return "cross " + node.assignment.cross_server_id + " slot " + node.assignment.cross_pos;
  return node.waiting ? "waiting" : "\u2013";
}

// The node pages and searches (GET /api/nodes?type=game&q=..&offset=..&limit=..): the page
// holds one page of rows whatever the number of game nodes.
function renderNodes() {
  const { nodes, total, matched } = state.nodes;
  const pages = Math.max(1, Math.ceil(matched / PAGE_SIZE));
  const readOnly = state.access !== "admin";
  const rows = nodes.map((n) => {
    const actions = el("td", { class: "actions writes" },
      el("button", {
        type: "button", "data-action": "maintenance", disabled: readOnly,
        text: n.maintenance ? "End maintenance" : "Maintenance",
        onclick: () => write(
          (n.maintenance ? "End maintenance of" : "Put into maintenance:") + " game " + n.id + " (" + (n.name || "no name") + ")?",
          "Maintenance of game " + n.id,
          () => api("PUT", "/api/nodes/game/" + n.id + "/maintenance", { maintenance: !n.maintenance }).then((r) => "maintenance " + r.maintenance)),
      }),
      el("button", {
        type: "button", "data-action": "move", disabled: readOnly, text: "Move",
        onclick: () => write("Move game " + n.id + " to another cross node of platform " + n.cross_plat + ".",
          "Move of game " + n.id,
          (answer) => {
            const [cross, pos] = answer.split(/[\s/:]+/).map(Number);
            const body = { serv_id: n.id, cross_server_id: cross };
            if (pos) body.cross_pos = pos;
            return api("POST", "/api/assign", body).then((r) => "cross " + r.cross_server_id + " slot " + r.cross_pos);
          },
          { label: "cross_server_id (optionally followed by a slot, e.g. \"9002 7\")" }),
      }),
      el("button", {
        type: "button", "data-action": "kick", class: "danger", disabled: readOnly, text: "Kick",
        onclick: () => write("Kick game " + n.id + "? It gets KICK 3 and may log in again.", "Kick of game " + n.id,
          () => api("POST", "/api/nodes/game/" + n.id + "/kick").then((r) => r.kicked)),
      }),
    );
    return el("tr", { "data-serv": String(n.id) },
      el("td", { class: "num", text: n.id }), el("td", { text: n.name || "" }),
      el("td", { text: n.cross_plat, title: "AUTH plat " + n.plat }),
      el("td", {}, statusBadge(statusOf(n))), el("td", { text: crossCell(n) }),
      el("td", { class: "num", text: n.players_online }), el("td", { text: when(n.connected_since) }), actions);
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "8", class: "empty", text: total ? "No game node matches." : "No game node online." })));
  $("nodes-body").replaceChildren(...rows);
  $("nodes-count").textContent = matched + " of " + total + " game nodes";
  $("nodes-page").textContent = "page " + (state.nodesPage + 1) + " of " + pages;
  $("nodes-prev").disabled = state.nodesPage === 0;
  $("nodes-next").disabled = state.nodesPage >= pages - 1;
}

async function refreshNodes() {
  const query = () => {
    const params = new URLSearchParams({ type: "game", offset: String(state.nodesPage * PAGE_SIZE), limit: String(PAGE_SIZE) });
    const q = $("nodes-search").value.trim();
    const status = $("nodes-status").value;
    if (q) params.set("q", q);
    if (status) params.set("status", status);
    return api("GET", "/api/nodes?" + params);
  };
  let data = await query();
  if (!data.nodes.length && data.matched && state.nodesPage > 0) {
    // Fewer nodes than before: show the last page there is.
    state.nodesPage = Math.floor((data.matched - 1) / PAGE_SIZE);
    data = await query();
  }
  state.nodes = data;
  renderNodes();
}

// ---- cross platforms ----

function crossCard(plat, c) {
  const members = c.members.length;
  const cap = c.capacity || 0;
  const pct = cap ? Math.min(100, Math.round((members / cap) * 100)) : 0;
  const fill = el("div", { class: "bar-fill" });
  // CSSOM, not a style attribute: the Content-Security-Policy allows only the former.
  fill.style.width = pct + "%";
  const bar = el("div", { class: "bar" + (pct >= 90 ? " bar-full" : ""), title: members + " of " + cap }, fill);
  const readOnly = state.access !== "admin";
  return el("div", { class: "cross-card", "data-cross": String(c.cross_server_id) },
    el("div", { class: "cross-head" },
      el("span", { class: "dot " + (c.online ? "dot-on" : "dot-off"), title: c.online ? "online" : "offline" }),
      el("strong", { text: "cross " + c.cross_server_id }), el("span", { class: "muted", text: c.name || "" }),
      c.draining ? el("span", { class: "status status-maintenance", text: "draining" }) : null),
    bar,
    el("div", { class: "muted small", text: members + " / " + cap + " members, " + c.free + " free" + (c.capacity_override ? ", capacity override " + c.capacity_override : "") }),
    el("div", { class: "writes" },
      el("button", {
        type: "button", "data-action": "drain", disabled: readOnly, text: c.draining ? "Stop draining" : "Drain",
        onclick: () => write((c.draining ? "Stop draining" : "Drain") + " cross " + c.cross_server_id + " (" + plat + ")?",
          "Drain of cross " + c.cross_server_id,
          () => api("PUT", "/api/cross/" + c.cross_server_id + "/drain", { drain: !c.draining }).then((r) => "drain " + r.drain)),
      }),
      el("button", {
        type: "button", "data-action": "capacity", disabled: readOnly, text: "Capacity\u2026",
        onclick: () => write("Capacity override for cross " + c.cross_server_id + " (0 removes the override).",
          "Capacity of cross " + c.cross_server_id,
          (answer) => api("PUT", "/api/cross/" + c.cross_server_id + "/capacity", { capacity: Number(answer) }).then((r) => "override " + r.capacity_override),
          { label: "capacity (0..65535)", value: c.capacity_override || c.capacity }),
      })),
    el("details", {}, el("summary", { text: "members" }),
      el("ul", { class: "members" }, ...c.members.map((m) => el("li", { text: "slot " + m.cross_pos + ": game " + m.serv_id + " " + (m.serv_name || "") + (m.online ? "" : " (offline)") })))));
}

async function refreshCross() {
  const data = await api("GET", "/api/cross");
  const blocks = data.platforms.map((p) => el("div", { class: "platform", "data-plat": p.plat },
    el("h3", {}, "platform " + (p.plat || "(none)") + " ", el("span", { class: "muted small", text: p.cross_nodes.length + " cross nodes, " + p.waiting.length + " game nodes waiting" + (p.waiting.length ? ": " + p.waiting.slice(0, 20).join(", ") : "") })),
    el("div", { class: "cross-grid" }, ...p.cross_nodes.map((c) => crossCard(p.plat, c)))));
  if (!blocks.length) blocks.push(el("p", { class: "empty", text: "No cross node known yet." }));
  $("cross-body").replaceChildren(...blocks);
  $("plat-names").replaceChildren(...data.platforms.map((p) => el("option", { value: p.plat })));
}

// ---- whitelist ----

function renderWhitelist() {
  const q = $("whitelist-search").value.toLowerCase();
  const shown = q ? state.whitelist.entries.filter((e) => e.toLowerCase().includes(q)) : state.whitelist.entries;
  const pages = Math.max(1, Math.ceil(shown.length / PAGE_SIZE));
  state.whitelistPage = Math.min(state.whitelistPage, pages - 1);
  const from = state.whitelistPage * PAGE_SIZE;
  const readOnly = state.access !== "admin";
  const items = shown.slice(from, from + PAGE_SIZE).map((entry) => el("li", { "data-entry": entry },
    el("span", { class: "entry", text: entry }),
    el("button", {
      type: "button", class: "danger small writes", "data-action": "remove", disabled: readOnly, text: "Remove",
      onclick: () => write("Remove " + JSON.stringify(entry) + " from the whitelist?", "Removal of " + JSON.stringify(entry),
        () => api("DELETE", "/api/whitelist", { entries: [entry] }).then((r) => "version " + r.version)),
    })));
  if (!items.length) items.push(el("li", { class: "empty", text: state.whitelist.entries.length ? "No entry matches." : "The whitelist is empty." }));
  $("whitelist-body").replaceChildren(...items);
  $("whitelist-version").textContent = "version " + state.whitelist.version;
  $("whitelist-count").textContent = shown.length + " of " + state.whitelist.entries.length + " entries";
  $("whitelist-page").textContent = "page " + (state.whitelistPage + 1) + " of " + pages;
  $("whitelist-prev").disabled = state.whitelistPage === 0;
  $("whitelist-next").disabled = state.whitelistPage >= pages - 1;
}

async function refreshWhitelist() {
  state.whitelist = await api("GET", "/api/whitelist");
  renderWhitelist();
}

function addWhitelist(e) {
  e.preventDefault();
  const entries = $("whitelist-add").value.split(/\r?\n/).map((s) => s.trim()).filter(Boolean);
  if (!entries.length) {
    showMessage("Nothing to add: give one entry per line.", "error");
    return;
  }
  const shownList = entries.slice(0, 5).map((x) => JSON.stringify(x)).join(", ") + (entries.length > 5 ? ", \u2026" : "");
  write("Add " + entries.length + " entr" + (entries.length === 1 ? "y" : "ies") + " to the whitelist: " + shownList + "?",
    "Whitelist add",
    () => api("POST", "/api/whitelist", { entries }).then((r) => {
      $("whitelist-add").value = "";
      return r.changed + " added, version " + r.version;
    }));
}

// ---- server list ----

async function refreshServers() {
  const plat = $("servers-plat").value.trim();
  if (!plat) {
    const data = await api("GET", "/api/cross");
    $("plat-names").replaceChildren(...data.platforms.map((p) => el("option", { value: p.plat })));
    if (!data.platforms.length) {
      $("servers-count").textContent = "give a platform";
      return;
    }
    $("servers-plat").value = data.platforms[0].plat;
    return refreshServers();
  }
  const data = await api("GET", "/api/servers?plat=" + encodeURIComponent(plat));
  const rows = data.servers.map((s) => el("tr", { "data-serv": String(s.id) },
    el("td", { class: "num", text: s.id }), el("td", { text: s.name }), el("td", { text: s.addr || "" }),
    el("td", { text: when(s.open_time) }), el("td", {}, statusBadge(s.status))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "No game server on platform " + plat + "." })));
  $("servers-body").replaceChildren(...rows);
  $("servers-count").textContent = data.servers.length + " servers";
}

// ---- audit ----

async function refreshAudit() {
  const data = await api("GET", "/api/audit?lines=200");
  const lines = data.lines.slice().reverse();
  const items = lines.map((l) => el("li", { text: l }));
  if (!data.enabled) items.push(el("li", { class: "empty", text: "No audit log: the node runs without a state directory or audit_log." }));
  else if (!items.length) items.push(el("li", { class: "empty", text: "No change audited yet." }));
  $("audit-body").replaceChildren(...items);
}

// ---- pages, refresh, sign-in ----

const PAGES = {
  overview: refreshOverview,
  nodes: refreshNodes,
  cross: refreshCross,
  whitelist: refreshWhitelist,
  servers: refreshServers,
  audit: refreshAudit,
};

async function refreshPage() {
  if (!state.token || document.hidden) return;
  if (state.busy) {
    // A refresh is under way (it may predate a change just made): run one more after it.
    state.again = true;
    return;
  }
  state.busy = true;
  state.again = false;
  try {
    await PAGES[state.page]();
  } catch (e) {
    if (e.status !== 401) showMessage("Could not load " + state.page + ": " + e.message, "error");
  } finally {
    state.busy = false;
  }
  document.body.setAttribute("data-loaded", state.page);
  if (state.again) refreshPage();
}

function show(page) {
  state.page = page;
  for (const name of Object.keys(PAGES)) $("page-" + name).hidden = name !== page;
  for (const b of $("nav").querySelectorAll("button")) b.classList.toggle("active", b.dataset.page === page);
  document.body.removeAttribute("data-loaded");
  location.hash = page;
  refreshPage();
}

function startTimers() {
  stopTimers();
  state.timers.push(setInterval(() => state.page === "overview" && refreshPage(), OVERVIEW_EVERY_MS));
  // The whitelist may hold 100,000s of entries: it is fetched when opened, after a change
  // and on Refresh, not on a timer.
  state.timers.push(setInterval(() => !["overview", "whitelist"].includes(state.page) && !$("confirm").open && refreshPage(), PAGE_EVERY_MS));
}

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
}

async function signIn(token) {
  state.token = token;
  try {
    const who = await api("GET", "/api/whoami");
    state.access = who.access;
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("signin-error").textContent = "Sign-in failed: " + e.message;
    $("signin-error").hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signin-error").hidden = true;
  const readOnly = state.access !== "admin";
  document.body.classList.toggle("read-only", readOnly);
  $("readonly-banner").hidden = !readOnly;
  $("whitelist-add").disabled = $("whitelist-add-button").disabled = readOnly;
  $("access").textContent = state.access;
  $("access").className = "badge badge-" + state.access;
  startTimers();
  const wanted = location.hash.slice(1);
  show(PAGES[wanted] ? wanted : "overview");
}

function signOut(why) {
  stopTimers();
  state.token = state.access = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("signin").hidden = false;
  $("token").value = "";
  $("signin-error").textContent = why || "";
  $("signin-error").hidden = !why;
}

function init() {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim());
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", () => refreshPage());
  for (const b of $("nav").querySelectorAll("button")) b.addEventListener("click", () => show(b.dataset.page));
  let searchTimer = null;
  $("nodes-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.nodesPage = 0; refreshPage(); }, 200);
  });
  $("nodes-status").addEventListener("change", () => { state.nodesPage = 0; refreshPage(); });
  $("nodes-prev").addEventListener("click", () => { state.nodesPage--; refreshPage(); });
  $("nodes-next").addEventListener("click", () => { state.nodesPage++; refreshPage(); });
  $("whitelist-search").addEventListener("input", () => { state.whitelistPage = 0; renderWhitelist(); });
  $("whitelist-prev").addEventListener("click", () => { state.whitelistPage--; renderWhitelist(); });
  $("whitelist-next").addEventListener("click", () => { state.whitelistPage++; renderWhitelist(); });
  $("whitelist-form").addEventListener("submit", addWhitelist);
  $("servers-form").addEventListener("submit", (e) => { e.preventDefault(); refreshPage(); });
  document.addEventListener("visibilitychange", () => refreshPage());
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
}

init();
