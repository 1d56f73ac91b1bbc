// Turnpike console: renders the pages from the REST API's JSON. The session lives in an
// HttpOnly cookie; this script keeps only the CSRF token (in memory) and sends it with every
// request that changes something. No inline code: the page's CSP allows this file only.
"use strict";

const state = { csrf: null, kind: null, tenantId: null, acting: null };

function $(id) { return document.getElementById(id); }

function showError(message) {
  const e = $("error");
  e.textContent = message || "";
  e.hidden = !message;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  if (state.acting && !path.startsWith("/console")) headers["X-Turnpike-Tenant"] = state.acting.id;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401 && path !== "/console/session") {
    signedOut();
    throw new Error("Your session ended: sign in again.");
  }
  if (r.status === 204) return null;
  const data = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : `request failed (${r.status})`;
    throw new Error(msg);
  }
  return data;
}

// GET `path` as text (CSV, HTML), with the session and the tenant acted in.
async function apiText(path) {
  const headers = {};
  if (state.acting) headers["X-Turnpike-Tenant"] = state.acting.id;
  const r = await fetch(path, { headers, credentials: "same-origin" });
  if (r.status === 401) { signedOut(); throw new Error("Your session ended: sign in again."); }
  const text = await r.text();
  if (!r.ok) {
    let msg = `request failed (${r.status})`;
    try { msg = JSON.parse(text).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return text;
}

function saveFile(text, type, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return (i === 0 ? String(v) : v.toFixed(2)) + " " + units[i];
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "never";
}

// One figure of a `<dl class="figures">`: its term, value and (on hover) exact value.
function figure(dl, term, value, exact) {
  const d = document.createElement("div");
  const dt = document.createElement("dt"); dt.textContent = term;
  const dd = document.createElement("dd"); dd.textContent = value;
  if (exact !== undefined) dd.title = exact;
  d.append(dt, dd);
  dl.appendChild(d);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", async () => {
    showError("");
    try { await onClick(); } catch (e) { showError(e.message); }
  });
  return b;
}

const tenantPages = ["overview", "credentials", "usage", "alerts", "logs", "signalling", "keys", "billing"];
const adminPages = ["tenants", "node"];
const pages = ["sign-in"].concat(tenantPages, adminPages);

function show(page) {
  for (const p of pages) $(p).hidden = p !== page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function signedOut() {
  state.csrf = null; state.kind = null; state.tenantId = null; state.acting = null;
  $("nav").hidden = true;
  $("acting").hidden = true;
  show("sign-in");
}

function signedIn(s) {
  state.csrf = s.csrf; state.kind = s.kind; state.tenantId = s.tenant_id || null;
  state.suspended = Boolean(s.suspended);
  $("nav").hidden = false;
  navFor();
  route();
}

// Which links show: a tenant's pages for a tenant (or the operator acting in one), the
// operator's pages for the admin key.
function navFor() {
  const admin = state.kind === "admin";
  const tenantView = state.kind === "tenant" || (admin && state.acting);
  for (const a of document.querySelectorAll("nav [data-admin]")) a.hidden = !admin;
  for (const a of document.querySelectorAll("nav [data-tenant]")) a.hidden = !tenantView;
  $("acting").hidden = !(admin && state.acting);
  $("suspended").hidden = !(tenantView && (admin ? state.acting && state.acting.suspended : state.suspended));
  if (admin && state.acting) $("acting-name").textContent = `${state.acting.name} (${state.acting.id})`;
}

function actAs(t) {
  state.acting = t ? { id: t.id, name: t.name, suspended: Boolean(t.suspended_at) } : null;
  navFor();
  const target = t ? "#overview" : "#tenants";
  if (location.hash === target) route(); else location.hash = target;
}

const loaders = {
  overview: () => loadOverview(), credentials: () => loadCredentials(), usage: () => loadUsage(),
  alerts: () => loadAlerts(), logs: () => loadLogs(), signalling: () => loadRooms(),
  keys: () => loadKeys(), billing: () => loadBilling(), tenants: () => loadTenants(),
  node: () => loadNode(),
};

async function route() {
  showError("");
  if (!state.csrf) { show("sign-in"); return; }
  let page = (location.hash || "").replace("#", "");
  const allowed = state.kind === "admin"
    ? adminPages.concat(state.acting ? tenantPages : []) : tenantPages;
  if (!allowed.includes(page)) page = allowed[0];
  show(page);
  // Busy until its data is in: assistive technology (and tests) wait for it. Laid out but
  // invisible meanwhile, so the page appears whole instead of shifting as tables fill.
  const el = $(page);
  el.setAttribute("aria-busy", "true");
  el.style.visibility = "hidden";
  try { await loaders[page](); } catch (e) { showError(e.message); }
  el.style.visibility = "";
  el.setAttribute("aria-busy", "false");
}

async function loadOverview() {
  const c = await api("GET", "/v1/usage/current");
  const dl = $("current");
  dl.replaceChildren();
  const add = (term, value, exact) => figure(dl, term, value, exact);
  add("Period", `${when(c.period_start)} to ${when(c.period_end)}`);
  add("Relayed this period", bytes(c.usage.total_bytes), `${c.usage.total_bytes} bytes`);
  add("Quota", c.quota_bytes ? bytes(c.quota_bytes) : "none",
      c.quota_bytes ? `${c.quota_bytes} bytes` : undefined);
  add("Used of quota", c.percent_used == null ? "no quota" : `${c.percent_used.toFixed(1)} %`);
  add("Allocations", String(c.usage.allocations));
  add("Allocation minutes", String(Math.round(c.usage.allocation_seconds / 60)));
  const now = Math.floor(Date.now() / 1000);
  const from = Math.floor(now / 3600) * 3600 - 47 * 3600;
  const rep = await api("GET", `/v1/usage?from=${from}&to=${now + 1}&group_by=hour`);
  const byHour = new Map(rep.groups.map((g) => [g.period_start, g.total_bytes]));
  const xs = [], ys = [];
  for (let t = from; t <= now; t += 3600) { xs.push(t); ys.push(byHour.get(t) || 0); }
  chart($("hours-chart"), xs, [{ label: "bytes", values: ys }]);
  // Per day over the period so far (UTC days, as the API groups them), empty days at zero.
  const end = Math.min(c.period_end, now + 1);
  const days = await api("GET", `/v1/usage?from=${c.period_start}&to=${end}&group_by=day`);
  const byDay = new Map(days.groups.map((g) => [g.period_start, g.total_bytes]));
  const dx = [], dy = [];
  for (let t = c.period_start; t < end; t += 86400) { dx.push(t); dy.push(byDay.get(t) || 0); }
  chart($("days-chart"), dx, [{ label: "bytes", values: dy }]);
  const live = await api("GET", "/v1/allocations/live?limit=20");
  $("live-count").textContent = live.count === 0 ? "No open allocations."
    : `${live.count}${live.count === 20 ? " or more" : ""} open allocation${live.count === 1 ? "" : "s"}.`;
  const lb = $("live-table").querySelector("tbody");
  lb.replaceChildren();
  for (const a of live.items) {
    const tr = document.createElement("tr");
    cell(tr, a.username); cell(tr, a.client); cell(tr, a.transport); cell(tr, when(a.started_at));
    lb.appendChild(tr);
  }
  const top = await api("GET", "/v1/usage/top-users?limit=10");
  const tb = $("top-users").querySelector("tbody");
  tb.replaceChildren();
  for (const u of top.items) {
    const tr = document.createElement("tr");
    cell(tr, u.user_id || "(no user id)");
    cell(tr, bytes(u.total_bytes)).title = `${u.total_bytes} bytes`;
    cell(tr, String(Math.round(u.allocation_seconds / 60)));
    tb.appendChild(tr);
  }
}

// Charts: uPlot (vendored, compiled into the binary). Times are shown in the browser's zone;
// the legend and the table give exact byte counts.
const charts = new Map();
const palette = ["#0b5cad", "#b35900", "#116329", "#8250df", "#a40e26", "#57606a"];

function chart(el, xs, series) {
  if (charts.has(el)) { charts.get(el).destroy(); charts.delete(el); }
  el.replaceChildren();
  if (typeof uPlot === "undefined") return;
  const width = Math.max(280, el.clientWidth || 600);
  const opts = {
    width, height: 240,
    series: [{}].concat(series.map((s, i) => ({
      label: s.label, stroke: palette[i % palette.length], width: 2,
      value: (u, v) => (v == null ? "" : `${bytes(v)} (${v} B)`),
    }))),
    axes: [{}, { values: (u, vals) => vals.map((v) => bytes(v)), size: 80 }],
    scales: { x: { time: true } },
  };
  charts.set(el, new uPlot(opts, [xs].concat(series.map((s) => s.values)), el));
}

function dateInput(unix) {
  const d = new Date(unix * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

function localMidnight(value) {
  const [y, m, d] = value.split("-").map(Number);
  return Math.floor(new Date(y, m - 1, d).getTime() / 1000);
}

let lastReport = null;

async function loadUsage() {
  if (!$("usage-from").value) {
    const now = Math.floor(Date.now() / 1000);
    $("usage-from").value = dateInput(now - 29 * 86400);
    $("usage-to").value = dateInput(now);
  }
  const from = localMidnight($("usage-from").value);
  const to = localMidnight($("usage-to").value) + 86400;
  const q = new URLSearchParams({ from: String(from), to: String(to), group_by: $("usage-group").value, by: $("usage-by").value });
  const rep = await api("GET", `/v1/usage?${q}`);
  lastReport = rep;
  $("usage-total").textContent = `Total: ${bytes(rep.totals.total_bytes)} (${rep.totals.total_bytes} bytes), ` +
    `${rep.totals.allocations} allocations`;
  const periods = [...new Set(rep.groups.map((g) => g.period_start))].sort((a, b) => a - b);
  const totals = new Map();
  for (const g of rep.groups) totals.set(g.key, (totals.get(g.key) || 0) + g.total_bytes);
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([k]) => k);
  const series = top.map((k) => {
    const m = new Map(rep.groups.filter((g) => g.key === k).map((g) => [g.period_start, g.total_bytes]));
    return { label: k == null ? "all" : k, values: periods.map((p) => m.get(p) || 0) };
  });
  chart($("usage-chart"), periods, series);
  const body = $("usage-table").querySelector("tbody");
  body.replaceChildren();
  for (const g of rep.groups) {
    const tr = document.createElement("tr");
    cell(tr, new Date(g.period_start * 1000).toLocaleString());
    cell(tr, g.key == null ? "" : g.key);
    const b = cell(tr, bytes(g.total_bytes));
    b.title = `${g.total_bytes} bytes`;
    cell(tr, String(g.allocations));
    cell(tr, String(Math.round(g.allocation_seconds / 60)));
    body.appendChild(tr);
  }
}

const GB = 1e9;

async function loadAlerts() {
  const quotas = await api("GET", "/v1/quotas");
  const q = (quotas.items || quotas).find((x) => x.scope === "tenant");
  if (q && q.bytes_per_period) {
    const b = q.bytes_per_period;
    $("quota-now").textContent = `Now: ${bytes(b)} (${b} bytes) per ${q.period}; thresholds ` +
      q.thresholds.map((t) => `${t.percent} % ${t.action}`).join(", ");
    $("quota-gb").value = String(b / GB);
    $("quota-period").value = q.period;
  } else {
    $("quota-now").textContent = "No quota: usage is unlimited.";
  }
  const n = await api("GET", "/v1/notifications");
  $("notify-email").value = n.email_to || "";
  $("notify-webhook").value = n.webhook_url || "";
  await loadDeliveries();
  const alerts = await api("GET", "/v1/alerts");
  const body = $("alert-table").querySelector("tbody");
  body.replaceChildren();
  for (const a of alerts.items || alerts) {
    const tr = document.createElement("tr");
    cell(tr, when(a.at));
    cell(tr, a.scope);
    cell(tr, `${a.percent} %`);
    cell(tr, a.action);
    const u = cell(tr, `${bytes(a.bytes_used)} of ${bytes(a.bytes_quota)}`);
    u.title = `${a.bytes_used} of ${a.bytes_quota} bytes`;
    body.appendChild(tr);
  }
}

async function loadDeliveries() {
  const list = await api("GET", "/v1/notifications/deliveries?limit=50");
  const body = $("delivery-table").querySelector("tbody");
  body.replaceChildren();
  for (const d of list) {
    const tr = document.createElement("tr");
    cell(tr, when(d.at));
    cell(tr, `${d.kind} ${d.event_id}`);
    cell(tr, `${d.channel} ${d.target}`);
    cell(tr, String(d.attempt));
    const o = cell(tr, d.outcome + (d.status ? ` (HTTP ${d.status})` : "") + (d.error ? `: ${d.error}` : ""));
    o.className = d.outcome === "delivered" ? "state-enabled" : "state-disabled";
    const actions = cell(tr, "");
    if (d.outcome !== "delivered" && d.channel === "webhook") {
      actions.appendChild(button(`Retry ${d.event_id}`, async () => {
        await api("POST", `/v1/notifications/deliveries/${encodeURIComponent(d.event_id)}/retry`);
        refreshDeliveries();
      }, "secondary"));
    }
    body.appendChild(tr);
  }
}

// Deliveries run in the background: the log is read again a few times.
function refreshDeliveries() {
  for (const ms of [700, 2000, 5000, 10000]) {
    setTimeout(() => { if (!$("alerts").hidden) loadDeliveries().catch((e) => showError(e.message)); }, ms);
  }
}

async function sendTest() {
  const r = await api("POST", "/v1/notifications/test");
  $("test-sent").textContent = `Sent ${r.event_id}; its deliveries appear below.`;
  refreshDeliveries();
}

async function saveQuota(ev) {
  ev.preventDefault();
  showError("");
  const notify = Number($("quota-notify").value);
  const at100 = $("quota-action").value;
  const thresholds = [{ percent: notify, action: "notify" }];
  if (notify !== 100 || at100 !== "notify") thresholds.push({ percent: 100, action: at100 });
  try {
    await api("PUT", "/v1/quota", {
      period: $("quota-period").value,
      bytes_per_period: Math.round(Number($("quota-gb").value) * GB),
      thresholds,
    });
    await loadAlerts();
  } catch (e) { showError(e.message); }
}

async function saveNotifications(ev) {
  ev.preventDefault();
  showError("");
  const email = $("notify-email").value.trim();
  const hook = $("notify-webhook").value.trim();
  try {
    await api("PUT", "/v1/notifications", { email_to: email || null, webhook_url: hook || null });
    $("notify-saved").textContent = "Saved.";
  } catch (e) { showError(e.message); }
}

async function loadKeys() {
  const keys = await api("GET", "/v1/keys");
  const body = $("key-table").querySelector("tbody");
  body.replaceChildren();
  const now = Date.now() / 1000;
  for (const k of keys.items || keys) {
    const tr = document.createElement("tr");
    cell(tr, k.kind + (k.credential_id ? ` (credential ${k.credential_id})` : "") +
      (k.kind === "publishable" ? `; origins: ${(k.allowed_origins || []).join(", ") || "none"}` : ""));
    cell(tr, k.prefix);
    cell(tr, when(k.created_at));
    cell(tr, when(k.expires_at));
    const live = !k.revoked && !(k.expires_at && k.expires_at <= now);
    const st = cell(tr, live ? "live" : k.revoked ? "revoked" : "expired");
    st.className = live ? "state-enabled" : "state-disabled";
    const actions = cell(tr, "");
    if (live && k.kind === "publishable") {
      actions.appendChild(button(`Revoke ${k.prefix}`, async () => {
        await api("DELETE", `/v1/keys/${encodeURIComponent(k.id)}`);
        await loadKeys();
      }, "secondary"));
    }
    body.appendChild(tr);
  }
}

async function rotateKey(ev) {
  ev.preventDefault();
  showError("");
  try {
    const r = await api("POST", "/v1/keys/rotate", { overlap_seconds: Number($("rotate-overlap").value) * 3600 });
    $("rotated-key").textContent = r.key;
    $("rotated").hidden = false;
    await loadKeys();
  } catch (e) { showError(e.message); }
}

function csvField(v) {
  const s = v == null ? "" : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function downloadCsv() {
  if (!lastReport) return;
  const cols = ["period_start", "key", "total_bytes", "client_to_server_bytes", "server_to_peer_bytes",
    "peer_to_server_bytes", "server_to_client_bytes", "allocations", "allocation_seconds"];
  const lines = [cols.join(",")].concat(lastReport.groups.map((g) =>
    cols.map((c) => csvField(c === "period_start" ? new Date(g.period_start * 1000).toISOString() : g[c])).join(",")));
  saveFile(lines.join("\n") + "\n", "text/csv", `usage-${$("usage-from").value}-${$("usage-to").value}.csv`);
}

let credentialCursor = null;

function credentialQuery(cursor) {
  const q = new URLSearchParams({ limit: "100" });
  for (const [k, id] of [["search", "filter-search"], ["label", "filter-label"], ["tag", "filter-tag"], ["state", "filter-state"]]) {
    const v = $(id).value.trim();
    if (v) q.set(k, v);
  }
  if (!q.has("state")) q.set("include_expired", "true");
  if (cursor) q.set("cursor", cursor);
  return q;
}

async function loadCredentials(more) {
  const page = await api("GET", `/v1/credentials?${credentialQuery(more ? credentialCursor : null)}`);
  credentialCursor = page.next_cursor;
  $("more-credentials").hidden = !page.next_cursor;
  const body = $("credential-table").querySelector("tbody");
  if (!more) body.replaceChildren();
  for (const c of page.items) {
    const tr = document.createElement("tr");
    cell(tr, c.username);
    cell(tr, c.label || "");
    cell(tr, (c.tags || []).join(", "));
    const st = cell(tr, c.expired ? "expired" : c.enabled ? "enabled" : "disabled");
    st.className = c.enabled && !c.expired ? "state-enabled" : "state-disabled";
    cell(tr, when(c.expires_at));
    const actions = cell(tr, "");
    actions.appendChild(button(c.enabled ? `Disable ${c.username}` : `Enable ${c.username}`, async () => {
      await api("PATCH", `/v1/credentials/${encodeURIComponent(c.id)}`, { enabled: !c.enabled });
      await loadCredentials();
    }, "secondary"));
    actions.appendChild(button(`Snippet for ${c.username}`, () => showSnippet(c, null), "secondary"));
    actions.appendChild(button(`Test ${c.username}`, () => showTester(c, ""), "secondary"));
    actions.appendChild(button(`Delete ${c.username}`, async () => {
      if (!confirm(`Delete ${c.username}? Its password stops working.`)) return;
      await api("DELETE", `/v1/credentials/${encodeURIComponent(c.id)}`);
      await loadCredentials();
    }, "secondary"));
    body.appendChild(tr);
  }
  $("credential-count").textContent = body.children.length === 0 ? "No credentials match."
    : `${body.children.length} credential${body.children.length === 1 ? "" : "s"} shown${page.next_cursor ? " (more below)" : ""}.`;
}

async function deleteByLabel() {
  const label = $("filter-label").value.trim();
  if (!label) { showError("Enter the label whose credentials to delete in \"Filter by label\"."); return; }
  if (!confirm(`Delete every credential labelled ${label}? Their passwords stop working.`)) return;
  const r = await api("DELETE", `/v1/credentials?label=${encodeURIComponent(label)}`);
  await loadCredentials();
  $("credential-count").textContent = `Deleted ${r.deleted} credential${r.deleted === 1 ? "" : "s"} labelled ${label}. ` +
    $("credential-count").textContent;
}

let iceUrls = null;
let snippetFor = null;

async function turnUrls() {
  if (!iceUrls) iceUrls = (await api("GET", "/v1/ice-servers/urls")).ice_servers;
  return iceUrls;
}

// The three snippets for credential `c` (with its password when just created).
async function showSnippet(c, password, publishable) {
  snippetFor = c;
  const servers = await turnUrls();
  const pw = password || "YOUR_PASSWORD";
  const entries = servers.map((urls) => (urls[0] || "").startsWith("stun:")
    ? `  { urls: ${JSON.stringify(urls)} }`
    : `  { urls: ${JSON.stringify(urls)},\n    username: ${JSON.stringify(c.username)},\n    credential: ${JSON.stringify(pw)} }`);
  $("snippet-js").textContent = `const pc = new RTCPeerConnection({ iceServers: [\n${entries.join(",\n")}\n] });`;
  const key = publishable || "YOUR_PUBLISHABLE_KEY";
  $("snippet-fetch").textContent =
    `const r = await fetch("${location.origin}/api/v1/turn/credentials?apiKey=${key}");\n` +
    "const iceServers = await r.json();\nconst pc = new RTCPeerConnection({ iceServers });";
  $("snippet-curl").textContent =
    `curl -s -H "Authorization: Bearer ${key}" -H "Origin: https://app.example.com" \\\n  "${location.origin}/v1/ice-servers"`;
  $("snippet-title").textContent = `Use ${c.username}`;
  $("snippet").hidden = false;
  $("publishable-made").textContent = "";
  $("snippet").scrollIntoView();
}

async function makePublishable(ev) {
  ev.preventDefault();
  showError("");
  if (!snippetFor) return;
  const origins = $("publishable-origins").value.split(",").map((o) => o.trim()).filter(Boolean);
  try {
    const r = await api("POST", `/v1/credentials/${encodeURIComponent(snippetFor.id)}/publishable-keys`, { allowed_origins: origins });
    await showSnippet(snippetFor, null, r.key);
    $("publishable-made").textContent = `Publishable key ${r.info.prefix}… made for ${origins.join(", ")}; it is in the snippets above (shown once).`;
  } catch (e) { showError(e.message); }
}

let testFor = null;

function showTester(c, password) {
  testFor = c;
  $("test-username").textContent = c.username;
  $("test-password").value = password || "";
  $("test-result").textContent = "";
  $("tester").hidden = false;
  $("tester").scrollIntoView();
  $("test-password").focus();
}

// A relay-only RTCPeerConnection with the credential: success is a relay candidate.
async function runTest(ev) {
  ev.preventDefault();
  showError("");
  if (!testFor) return;
  const out = $("test-result");
  out.textContent = "Testing…";
  const servers = (await turnUrls())
    .map((urls) => urls.filter((u) => u.startsWith("turn:") || u.startsWith("turns:")))
    .filter((urls) => urls.length)
    .map((urls) => ({ urls, username: testFor.username, credential: $("test-password").value }));
  if (!servers.length) { out.textContent = "This server lists no TURN URLs (set public_host)."; return; }
  const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: "relay" });
  const result = await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), 10000);
    pc.onicecandidate = (e) => {
      if (e.candidate && / typ relay/.test(e.candidate.candidate)) {
        clearTimeout(timer);
        resolve(e.candidate);
      } else if (!e.candidate) {
        clearTimeout(timer);
        resolve(null);
      }
    };
    pc.createDataChannel("test");
    pc.createOffer().then((o) => pc.setLocalDescription(o)).catch(() => resolve(null));
  });
  pc.close();
  if (result) {
    const addr = result.address || result.candidate.split(" ")[4];
    out.textContent = `Works: the server gave the relay address ${addr}:${result.port || result.candidate.split(" ")[5]}.`;
    out.className = "state-enabled";
  } else {
    out.textContent = "Failed: no relay address within 10 s (wrong password, disabled or expired credential, or the server is unreachable from this browser).";
    out.className = "state-disabled";
  }
}

async function createCredential(ev) {
  ev.preventDefault();
  showError("");
  const body = {};
  const label = $("new-label").value.trim();
  if (label) body.label = label;
  const hours = $("new-expiry").value.trim();
  if (hours) body.expires_in = Number(hours) * 3600;
  const tags = $("new-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.length) body.tags = tags;
  const quota = $("new-quota").value.trim();
  try {
    const c = await api("POST", "/v1/credentials", body);
    if (quota) {
      await api("PUT", `/v1/credentials/${encodeURIComponent(c.credential.id)}/quota`, {
        period: "month", bytes_per_period: Math.round(Number(quota) * GB),
        thresholds: [{ percent: 100, action: "refuse" }],
      });
    }
    $("created-username").textContent = c.credential.username;
    $("created-password").textContent = c.password;
    const servers = await turnUrls();
    const turn = servers.find((u) => (u[0] || "").startsWith("turn")) || [`turn:${location.hostname}:3478`];
    $("created-snippet").textContent =
      "const pc = new RTCPeerConnection({ iceServers: [{\n" +
      `  urls: ${JSON.stringify(turn)},\n` +
      `  username: ${JSON.stringify(c.credential.username)},\n` +
      `  credential: ${JSON.stringify(c.password)},\n` +
      "}] });";
    $("created").hidden = false;
    $("create-credential").reset();
    await loadCredentials();
    testFor = c.credential;
    $("test-username").textContent = c.credential.username;
    $("test-password").value = c.password;
    $("test-result").textContent = "";
    $("tester").hidden = false;
  } catch (e) { showError(e.message); }
}

let tenantsById = new Map();

async function loadTenants() {
  const list = await api("GET", "/v1/tenants");
  const body = $("tenant-table").querySelector("tbody");
  body.replaceChildren();
  tenantsById = new Map();
  const alerts = [];
  const plans = new Map((await api("GET", "/v1/billing/plans")).map((p) => [p.tenant_id, p]));
  for (const t of list.items || list) {
    tenantsById.set(t.id, t);
    const tr = document.createElement("tr");
    cell(tr, t.name);
    cell(tr, t.id);
    cell(tr, when(t.created_at));
    const p = plans.get(t.id);
    cell(tr, p ? `${p.price_per_gb} ${p.currency}/GB, ${p.price_per_allocation_hour} ${p.currency}/h` : "none");
    const st = cell(tr, t.suspended_at ? `suspended since ${when(t.suspended_at)}` : "active");
    st.className = t.suspended_at ? "state-disabled" : "state-enabled";
    const actions = cell(tr, "");
    actions.appendChild(button(`Open ${t.name}`, async () => actAs(t)));
    if (t.suspended_at) {
      actions.appendChild(button(`Resume ${t.name}`, async () => {
        await api("POST", `/v1/tenants/${encodeURIComponent(t.id)}/resume`);
        await loadTenants();
      }, "secondary"));
    } else {
      actions.appendChild(button(`Suspend ${t.name}`, async () => {
        if (!confirm(`Suspend ${t.name}? Its TURN credentials are refused and its live allocations closed until you resume it.`)) return;
        await api("POST", `/v1/tenants/${encodeURIComponent(t.id)}/suspend`);
        await loadTenants();
      }, "secondary"));
    }
    actions.appendChild(button(`Price plan of ${t.name}`, async () => editPlan(t), "secondary"));
    actions.appendChild(button(`Delete ${t.name}`, async () => {
      if (!confirm(`Delete the tenant ${t.name} with its credentials, keys and usage?`)) return;
      await api("DELETE", `/v1/tenants/${encodeURIComponent(t.id)}`);
      await loadTenants();
    }, "secondary"));
    body.appendChild(tr);
    alerts.push(tenantAlerts(t));
  }
  const all = (await Promise.all(alerts)).flat().sort((a, b) => b.at - a.at).slice(0, 100);
  const ab = $("all-alerts").querySelector("tbody");
  ab.replaceChildren();
  for (const a of all) {
    const tr = document.createElement("tr");
    cell(tr, when(a.at)); cell(tr, a.tenant); cell(tr, a.scope); cell(tr, `${a.percent} %`); cell(tr, a.action);
    ab.appendChild(tr);
  }
}

// One tenant's fired alerts, read as the operator acting in it.
async function tenantAlerts(t) {
  try {
    const r = await fetch("/v1/alerts", { headers: { "X-Turnpike-Tenant": t.id }, credentials: "same-origin" });
    if (!r.ok) return [];
    return (await r.json()).map((a) => Object.assign(a, { tenant: t.name }));
  } catch (e) { return []; }
}

let planFor = null;

async function editPlan(t) {
  planFor = t;
  $("plan-title").textContent = `Price plan of ${t.name}`;
  $("plan-saved").textContent = "";
  const now = new Date();
  $("plan-first").value = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
  const p = (await api("GET", "/v1/billing/plans")).find((x) => x.tenant_id === t.id);
  if (p) {
    $("plan-currency").value = p.currency;
    $("plan-gb").value = p.price_per_gb;
    $("plan-hour").value = p.price_per_allocation_hour;
    $("plan-included").value = String(p.included_bytes / GB);
    $("plan-day").value = String(p.billing_day);
    $("plan-first").value = p.first_month;
    $("plan-saved").textContent = "Current plan loaded.";
  }
  $("plan-editor").hidden = false;
  $("plan-currency").focus();
}

async function savePlan(ev) {
  ev.preventDefault();
  showError("");
  if (!planFor) return;
  try {
    const p = await api("PUT", `/v1/tenants/${encodeURIComponent(planFor.id)}/plan`, {
      currency: $("plan-currency").value.trim(),
      price_per_gb: $("plan-gb").value.trim(),
      price_per_allocation_hour: $("plan-hour").value.trim(),
      included_bytes: Math.round(Number($("plan-included").value) * GB),
      billing_day: Number($("plan-day").value),
      first_month: $("plan-first").value,
    });
    $("plan-saved").textContent = `Saved: ${p.price_per_gb} ${p.currency} per GB, ${p.price_per_allocation_hour} ${p.currency} per allocation hour, ${bytes(p.included_bytes)} included, periods from day ${p.billing_day}, statements from ${p.first_month}.`;
    await loadTenants();
  } catch (e) { showError(e.message); }
}

// The node's health and a few metrics, from its own endpoints.
async function loadNode() {
  const dl = $("node-figures");
  dl.replaceChildren();
  const add = (term, value) => figure(dl, term, value);
  const ready = await fetch("/readyz").then(async (r) => ({ ok: r.ok, body: await r.json().catch(() => ({})) }));
  add("Ready", ready.ok ? "yes" : `no: ${(ready.body.error || {}).message || "unknown"}`);
  const r = await fetch("/metrics");
  if (!r.ok) { add("Metrics", "not served here"); return; }
  const sums = new Map();
  for (const line of (await r.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-z_:]+)(\{[^}]*\})?\s+(\S+)/);
    if (m) sums.set(m[1], (sums.get(m[1]) || 0) + Number(m[3]));
  }
  const shown = [
    ["Allocations", "turnpike_allocations"], ["Connections", "turnpike_connections"],
    ["Channels", "turnpike_channels"], ["Permissions", "turnpike_permissions"],
    ["Bytes relayed", "turnpike_relay_bytes_total"], ["Packets dropped", "turnpike_dropped_packets_total"],
    ["Requests", "turnpike_requests_total"], ["Error responses", "turnpike_error_responses_total"],
    ["Signalling connections", "turnpike_signal_connections"], ["Signalling rooms", "turnpike_signal_rooms"],
    ["Console sessions", "turnpike_console_sessions"], ["Failed API keys", "turnpike_api_auth_failures_total"],
  ];
  for (const [label, name] of shown) {
    const v = sums.get(name) || 0;
    add(label, name === "turnpike_relay_bytes_total" ? `${bytes(v)}` : String(v));
  }
}

// Logs: allocations, failed authentications and the audit log over a date range.
async function loadLogs() {
  if (!$("logs-from").value) {
    const now = Math.floor(Date.now() / 1000);
    $("logs-from").value = dateInput(now - 6 * 86400);
    $("logs-to").value = dateInput(now);
  }
  const q = logRange();
  const filter = $("logs-filter").value.trim().toLowerCase();
  const keep = (fields) => !filter || fields.some((f) => String(f == null ? "" : f).toLowerCase().includes(filter));
  const allocs = (await api("GET", `/v1/allocations?${q}`)).reverse();
  const ab = $("allocation-table").querySelector("tbody");
  ab.replaceChildren();
  for (const a of allocs.filter((a) => keep([a.username, a.client, a.transport, a.user_id, a.relay]))) {
    const tr = document.createElement("tr");
    cell(tr, when(a.started_at)); cell(tr, a.username); cell(tr, a.client); cell(tr, a.transport);
    cell(tr, a.ended_at ? `${a.ended_at - a.started_at} s` : "open");
    const total = a.client_to_server_bytes + a.server_to_peer_bytes + a.peer_to_server_bytes + a.server_to_client_bytes;
    cell(tr, bytes(total)).title = `${total} bytes`;
    ab.appendChild(tr);
  }
  const fails = await api("GET", `/v1/auth-failures?${q}`);
  const fb = $("authfail-table").querySelector("tbody");
  fb.replaceChildren();
  for (const f of fails.filter((f) => keep([f.username, f.client, f.reason]))) {
    const tr = document.createElement("tr");
    cell(tr, when(f.at)); cell(tr, f.username); cell(tr, f.client); cell(tr, f.transport); cell(tr, f.reason);
    fb.appendChild(tr);
  }
  const audit = (await api("GET", `/v1/audit?${q}`)).reverse();
  const db = $("audit-table").querySelector("tbody");
  db.replaceChildren();
  for (const e of audit.filter((e) => keep([e.actor, e.action, e.target, e.detail]))) {
    const tr = document.createElement("tr");
    cell(tr, when(e.at)); cell(tr, e.actor); cell(tr, e.action); cell(tr, e.target); cell(tr, e.detail);
    db.appendChild(tr);
  }
}

function logRange() {
  const from = localMidnight($("logs-from").value);
  const to = localMidnight($("logs-to").value) + 86400;
  return new URLSearchParams({ from: String(from), to: String(to), limit: "1000" });
}

async function downloadLog(kind) {
  const q = logRange();
  q.set("format", "csv");
  q.set("limit", "100000");
  const text = await apiText(`/v1/${kind}?${q}`);
  saveFile(text, "text/csv", `${kind}-${$("logs-from").value}-${$("logs-to").value}.csv`);
}

// Signalling: live rooms, their participants, kick and close.
async function loadRooms() {
  const rooms = await api("GET", "/v1/signal/rooms");
  $("rooms-count").textContent = rooms.length ? `${rooms.length} live room${rooms.length === 1 ? "" : "s"}.` : "No live rooms.";
  const body = $("room-table").querySelector("tbody");
  body.replaceChildren();
  for (const r of rooms) {
    const tr = document.createElement("tr");
    cell(tr, r.room);
    cell(tr, String(r.participants));
    const actions = cell(tr, "");
    actions.appendChild(button(`Participants of ${r.room}`, () => showRoom(r.room), "secondary"));
    actions.appendChild(button(`Close ${r.room}`, async () => {
      if (!confirm(`Close the room ${r.room}? Every participant is disconnected.`)) return;
      await api("DELETE", `/v1/signal/rooms/${encodeURIComponent(r.room)}`);
      $("room-detail").hidden = true;
      setTimeout(() => loadRooms().catch((e) => showError(e.message)), 500);
    }, "secondary"));
    body.appendChild(tr);
  }
}

async function showRoom(room) {
  const r = await api("GET", `/v1/signal/rooms/${encodeURIComponent(room)}`);
  $("room-title").textContent = `Room ${room}`;
  const body = $("participant-table").querySelector("tbody");
  body.replaceChildren();
  for (const p of r.participants) {
    const tr = document.createElement("tr");
    cell(tr, p.id);
    cell(tr, p.identity);
    const actions = cell(tr, "");
    actions.appendChild(button(`Kick ${p.identity}`, async () => {
      await api("POST", `/v1/signal/rooms/${encodeURIComponent(room)}/kick`, { peer_id: p.id });
      setTimeout(() => showRoom(room).catch(() => { $("room-detail").hidden = true; loadRooms(); }), 500);
    }, "secondary"));
    body.appendChild(tr);
  }
  $("room-detail").hidden = false;
}

// Billing: the plan, the statements, one statement's lines and users.
let statementMonth = null;

function money(minor, s) {
  const d = s.minor_digits;
  const neg = minor < 0;
  const m = Math.abs(minor);
  const txt = d === 0 ? String(m) : `${Math.floor(m / 10 ** d)}.${String(m % 10 ** d).padStart(d, "0")}`;
  return `${neg ? "-" : ""}${txt} ${s.currency}`;
}

function utcDate(unix) {
  return new Date(unix * 1000).toISOString().slice(0, 10);
}

async function loadBilling() {
  const list = await api("GET", "/v1/billing/statements");
  const plan = list.plan;
  $("plan-now").textContent = plan
    ? `Plan: ${plan.price_per_gb} ${plan.currency} per GB, ${plan.price_per_allocation_hour} ${plan.currency} per allocation hour, ${bytes(plan.included_bytes)} included per period; periods start on day ${plan.billing_day} (UTC).`
    : "No price plan: the operator sets one.";
  const body = $("statement-table").querySelector("tbody");
  body.replaceChildren();
  for (const s of list.items) {
    const tr = document.createElement("tr");
    cell(tr, s.month);
    cell(tr, `${utcDate(s.period_start)} to ${utcDate(s.period_end)}`);
    cell(tr, s.status === "closed" ? `closed ${when(s.closed_at)}` : "open (so far)");
    cell(tr, `${s.total} ${s.currency}`);
    const actions = cell(tr, "");
    actions.appendChild(button(`View ${s.month}`, () => showStatement(s.month), "secondary"));
    body.appendChild(tr);
  }
  if (list.items.length) await showStatement(statementMonth || list.items[0].month);
}

async function showStatement(month) {
  const s = await api("GET", `/v1/billing/statements?month=${encodeURIComponent(month)}`);
  statementMonth = month;
  $("statement-title").textContent = `Statement ${s.month}`;
  $("statement-status").textContent = (s.status === "closed" ? `Closed ${when(s.closed_at)}: final.` : "Open: the figures so far.") +
    ` Period ${utcDate(s.period_start)} to ${utcDate(s.period_end)} (UTC, end excluded).`;
  const body = $("statement-lines").querySelector("tbody");
  body.replaceChildren();
  const line = (item, qty, price, amount, exact) => {
    const tr = document.createElement("tr");
    cell(tr, item);
    const q = cell(tr, qty);
    if (exact) q.title = exact;
    cell(tr, price);
    cell(tr, amount);
    body.appendChild(tr);
  };
  line("Data relayed in the period", bytes(s.bytes_in_period), "", "", `${s.bytes_in_period} bytes`);
  line("Late data of earlier periods", bytes(s.late_bytes), "", "", `${s.late_bytes} bytes`);
  line("Included", bytes(s.included_bytes), "", "", `${s.included_bytes} bytes`);
  line("Data charged", bytes(s.chargeable_bytes), `${s.price_per_gb} ${s.currency} per GB`, money(s.data_minor, s), `${s.chargeable_bytes} bytes`);
  line("Allocation time", `${(s.billable_allocation_seconds / 3600).toFixed(2)} h`, `${s.price_per_allocation_hour} ${s.currency} per hour`,
    money(s.allocation_minor, s), `${s.billable_allocation_seconds} s`);
  line("Total", "", "", money(s.total_minor, s));
  const ub = $("statement-users").querySelector("tbody");
  ub.replaceChildren();
  for (const u of s.users) {
    const tr = document.createElement("tr");
    cell(tr, u.user_id || (u.username ? `credential ${u.username}` : u.credential_id ? `credential ${u.credential_id}` : "(ephemeral, no user id)"));
    cell(tr, bytes(u.bytes)).title = `${u.bytes} bytes`;
    cell(tr, String(Math.round(u.allocation_seconds / 60)));
    cell(tr, money(u.data_minor + u.allocation_minor, s));
    ub.appendChild(tr);
  }
  $("statement").hidden = false;
}

async function statementCsv() {
  const text = await apiText(`/v1/billing/statements?month=${encodeURIComponent(statementMonth)}&format=csv`);
  saveFile(text, "text/csv", `statement-${statementMonth}.csv`);
}

async function statementPrint() {
  const html = await apiText(`/v1/billing/statements?month=${encodeURIComponent(statementMonth)}&format=html`);
  const w = window.open(URL.createObjectURL(new Blob([html], { type: "text/html" })), "_blank");
  if (!w) showError("The browser blocked the new tab: allow pop-ups for this console.");
}

async function createTenant(ev) {
  ev.preventDefault();
  showError("");
  try {
    const t = await api("POST", "/v1/tenants", { name: $("tenant-name").value.trim() });
    $("created-tenant-key").textContent = t.secret_key;
    $("created-tenant").hidden = false;
    $("create-tenant").reset();
    await loadTenants();
  } catch (e) { showError(e.message); }
}

async function signIn(ev) {
  ev.preventDefault();
  showError("");
  const input = $("key");
  try {
    const s = await api("POST", "/console/session", { key: input.value.trim() });
    input.value = "";
    signedIn(s);
  } catch (e) {
    input.value = "";
    showError(e.message);
  }
}

async function signOut() {
  try { await api("DELETE", "/console/session"); } catch (e) { /* ended already */ }
  signedOut();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("create-credential").addEventListener("submit", createCredential);
  $("filter").addEventListener("submit", (ev) => { ev.preventDefault(); showError(""); loadCredentials().catch((e) => showError(e.message)); });
  $("more-credentials").addEventListener("click", () => loadCredentials(true).catch((e) => showError(e.message)));
  $("delete-label").addEventListener("click", () => deleteByLabel().catch((e) => showError(e.message)));
  $("publishable-form").addEventListener("submit", makePublishable);
  $("test-form").addEventListener("submit", (ev) => runTest(ev).catch((e) => showError(e.message)));
  $("send-test").addEventListener("click", () => { showError(""); sendTest().catch((e) => showError(e.message)); });
  $("logs-form").addEventListener("submit", (ev) => { ev.preventDefault(); showError(""); loadLogs().catch((e) => showError(e.message)); });
  $("allocations-csv").addEventListener("click", () => downloadLog("allocations").catch((e) => showError(e.message)));
  $("audit-csv").addEventListener("click", () => downloadLog("audit").catch((e) => showError(e.message)));
  $("rooms-refresh").addEventListener("click", () => loadRooms().catch((e) => showError(e.message)));
  $("statement-csv").addEventListener("click", () => statementCsv().catch((e) => showError(e.message)));
  $("statement-print").addEventListener("click", () => statementPrint().catch((e) => showError(e.message)));
  $("plan-form").addEventListener("submit", savePlan);
  $("stop-acting").addEventListener("click", () => actAs(null));
  $("create-tenant").addEventListener("submit", createTenant);
  $("usage-form").addEventListener("submit", (ev) => { ev.preventDefault(); showError(""); loadUsage().catch((e) => showError(e.message)); });
  $("usage-csv").addEventListener("click", downloadCsv);
  $("quota-form").addEventListener("submit", saveQuota);
  $("notify-form").addEventListener("submit", saveNotifications);
  $("rotate-form").addEventListener("submit", rotateKey);
  for (const b of document.querySelectorAll("button.copy")) {
    b.addEventListener("click", () => navigator.clipboard.writeText($(b.dataset.copy).textContent));
  }
  window.addEventListener("hashchange", route);
  try {
    signedIn(await api("GET", "/console/session"));
  } catch (e) {
    signedOut();
  }
});
