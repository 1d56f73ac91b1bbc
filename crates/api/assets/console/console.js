// Turnpike console: renders the pages from the REST API's JSON. The session lives in an
// HttpOnly cookie; this script keeps only the CSRF token (in memory) and sends it with every
// request that changes something. No inline code: the page's CSP allows this file only.
"use strict";

const state = { csrf: null, kind: null, tenantId: null };

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

function bytes(n) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let v = Number(n), i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return (i === 0 ? String(v) : v.toFixed(2)) + " " + units[i];
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "never";
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

const pages = ["sign-in", "overview", "credentials", "usage", "alerts", "keys", "tenants"];

function show(page) {
  for (const p of pages) $(p).hidden = p !== page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function signedOut() {
  state.csrf = null; state.kind = null; state.tenantId = null;
  $("nav").hidden = true;
  show("sign-in");
}

function signedIn(s) {
  state.csrf = s.csrf; state.kind = s.kind; state.tenantId = s.tenant_id || null;
  $("nav").hidden = false;
  for (const a of document.querySelectorAll("nav [data-admin]")) a.hidden = s.kind !== "admin";
  for (const a of document.querySelectorAll("nav a:not([data-admin])")) {
    a.hidden = s.kind !== "tenant";
  }
  route();
}

async function route() {
  showError("");
  if (!state.csrf) { show("sign-in"); return; }
  let page = (location.hash || "").replace("#", "");
  if (state.kind === "admin") page = "tenants";
  else if (!["credentials", "usage", "alerts", "keys"].includes(page)) page = "overview";
  show(page);
  try {
    if (page === "overview") await loadOverview();
    if (page === "credentials") await loadCredentials();
    if (page === "usage") await loadUsage();
    if (page === "alerts") await loadAlerts();
    if (page === "keys") await loadKeys();
    if (page === "tenants") await loadTenants();
  } catch (e) { showError(e.message); }
}

async function loadOverview() {
  const c = await api("GET", "/v1/usage/current");
  const dl = $("current");
  dl.replaceChildren();
  const add = (term, value, exact) => {
    const d = document.createElement("div");
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = value;
    if (exact !== undefined) dd.title = exact;
    d.append(dt, dd);
    dl.appendChild(d);
  };
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
    cell(tr, k.kind + (k.credential_id ? ` (credential ${k.credential_id})` : ""));
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
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `usage-${$("usage-from").value}-${$("usage-to").value}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function loadCredentials() {
  const label = $("filter-label").value.trim();
  const q = new URLSearchParams({ limit: "100", include_expired: "true" });
  if (label) q.set("label", label);
  const page = await api("GET", `/v1/credentials?${q}`);
  const body = $("credential-table").querySelector("tbody");
  body.replaceChildren();
  for (const c of page.items) {
    const tr = document.createElement("tr");
    cell(tr, c.username);
    cell(tr, c.label || "");
    const st = cell(tr, c.expired ? "expired" : c.enabled ? "enabled" : "disabled");
    st.className = c.enabled && !c.expired ? "state-enabled" : "state-disabled";
    cell(tr, when(c.expires_at));
    const actions = cell(tr, "");
    actions.appendChild(button(c.enabled ? `Disable ${c.username}` : `Enable ${c.username}`, async () => {
      await api("PATCH", `/v1/credentials/${encodeURIComponent(c.id)}`, { enabled: !c.enabled });
      await loadCredentials();
    }, "secondary"));
    actions.appendChild(button(`Delete ${c.username}`, async () => {
      if (!confirm(`Delete ${c.username}? Its password stops working.`)) return;
      await api("DELETE", `/v1/credentials/${encodeURIComponent(c.id)}`);
      await loadCredentials();
    }, "secondary"));
    body.appendChild(tr);
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
  try {
    const c = await api("POST", "/v1/credentials", body);
    $("created-username").textContent = c.credential.username;
    $("created-password").textContent = c.password;
    $("created-snippet").textContent =
      "const pc = new RTCPeerConnection({ iceServers: [{\n" +
      `  urls: "turn:${location.hostname}:3478",\n` +
      `  username: ${JSON.stringify(c.credential.username)},\n` +
      `  credential: ${JSON.stringify(c.password)},\n` +
      "}] });";
    $("created").hidden = false;
    $("create-credential").reset();
    await loadCredentials();
  } catch (e) { showError(e.message); }
}

async function loadTenants() {
  const list = await api("GET", "/v1/tenants");
  const body = $("tenant-table").querySelector("tbody");
  body.replaceChildren();
  for (const t of list.items || list) {
    const tr = document.createElement("tr");
    cell(tr, t.name);
    cell(tr, t.id);
    cell(tr, when(t.created_at));
    body.appendChild(tr);
  }
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
  $("filter").addEventListener("submit", (ev) => { ev.preventDefault(); loadCredentials().catch((e) => showError(e.message)); });
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
