// hvsim web console: the application. Pages by URL fragment: #/login,
// #/vms, #/vm/NAME, #/media/NAME, #/sol/NAME, #/accounts. Data from the
// console API (/api) and Redfish (/redfish/v1); actions through Redfish.
// Text from the server is only ever inserted as text nodes.
"use strict";

const LOGIN = "/redfish/v1/SessionService/Sessions";

// ---- session -------------------------------------------------------------

const auth = {
  // A token, when the service answered the login with X-Auth-Token rather
  // than cookies (non-browser style); the session cookie otherwise.
  get token() { return sessionStorage.getItem("hvsim-token"); },
  get sessionUri() { return sessionStorage.getItem("hvsim-session"); },
  // The XSRF token: the cookie the service set at login.
  xsrf() {
    const m = document.cookie.match(/(?:^|;\s*)XSRF-TOKEN=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : null;
  },
  headers(method) {
    const h = {};
    if (this.token) h["X-Auth-Token"] = this.token;
    const x = this.xsrf();
    if (x && method !== "GET") h["X-XSRF-TOKEN"] = x;
    return h;
  },
  forget() {
    sessionStorage.removeItem("hvsim-token");
    sessionStorage.removeItem("hvsim-session");
  },
};

let me = null; // {user, role} once logged in
let loginReason = null; // why the login page is shown next, if not by choice

// Back to the login page, saying why.
function sessionEnded(why) {
  me = null;
  auth.forget();
  loginReason = why;
  if (location.hash === "#/login") route(); else location.hash = "#/login";
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// The message of an error body: Redfish's extended info, or the console
// API's {"error": ...}.
function messageOf(status, data) {
  if (data && typeof data === "object") {
    const e = data.error;
    if (e && typeof e === "object") {
      const info = e["@Message.ExtendedInfo"];
      if (Array.isArray(info) && info.length && info[0].Message) {
        const resolution = (i) => (i.Resolution && i.Resolution !== "None" ? " " + i.Resolution : "");
        return info.map((i) => i.Message + resolution(i)).join(" ");
      }
      if (e.message) return e.message;
    }
    if (typeof e === "string") return e;
  }
  if (typeof data === "string" && data.trim()) return data.trim();
  return "HTTP " + status;
}

async function api(method, path, body) {
  const opts = { method, headers: auth.headers(method), credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (path === LOGIN) opts.headers["X-Requested-With"] = "XMLHttpRequest";
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (r.status === 401 && path !== LOGIN && method === "GET") {
    const had = me !== null;
    if (had) sessionEnded("Your session has ended: log in again.");
    else if (location.hash !== "#/login") location.hash = "#/login";
    throw new ApiError(401, "Your session has ended: log in again.");
  }
  if (!r.ok) throw new ApiError(r.status, messageOf(r.status, data));
  return { status: r.status, data, headers: r.headers };
}

// ---- DOM helpers -----------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

function showError(msg) {
  const e = $("error");
  e.textContent = msg;
  e.hidden = !msg;
  if (msg) $("notice").hidden = true;
}

function showNotice(msg) {
  const n = $("notice");
  n.textContent = msg;
  n.hidden = !msg;
  if (msg) $("error").hidden = true;
}

function clearMessages() { showError(""); showNotice(""); }

const canOperate = () => me && (me.role === "Operator" || me.role === "Administrator");
const isAdmin = () => me && me.role === "Administrator";

// Run an action; its failure (a refusal from the server, too) is shown.
async function act(what, fn) {
  clearMessages();
  try {
    await fn();
    showNotice(what + ": done");
  } catch (e) {
    showError(what + " failed: " + e.message);
  }
}

function setMain(...children) {
  const m = $("main");
  m.replaceChildren(...children);
}

// ---- live updates --------------------------------------------------------

let stopLive = () => {};

// Call fn with each new rendering of VM `vm` (or of the list when vm is
// null): server-sent events from /api/events; polling if they cannot be had.
function live(vm, fn) {
  stopLive();
  let stopped = false;
  let timer = null;
  const url = "/api/events" + (vm ? "?vm=" + encodeURIComponent(vm) : "");
  let es = null;
  const poll = async () => {
    if (stopped) return;
    try {
      const r = await api("GET", vm ? "/api/vms/" + encodeURIComponent(vm) : "/api/vms");
      fn(r.data);
    } catch (e) { /* shown by the next render or the login page */ }
    if (!stopped) timer = setTimeout(poll, 500);
  };
  if (window.EventSource && !auth.token) {
    document.body.dataset.live = "events";
    es = new EventSource(url, { withCredentials: true });
    es.addEventListener("update", (e) => fn(JSON.parse(e.data)));
    es.addEventListener("ended", () => {
      es.close();
      stopped = true;
      sessionEnded("Your session has ended: log in again.");
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED && !stopped) {
        es = null;
        document.body.dataset.live = "polling";
        poll();
      }
    };
  } else {
    document.body.dataset.live = "polling";
    poll();
  }
  stopLive = () => {
    stopped = true;
    if (es) es.close();
    if (timer) clearTimeout(timer);
  };
}

// ---- pages ---------------------------------------------------------------

function loginPage(reason) {
  stopLive();
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("label", { for: "username" }, "User name"), user,
    h("label", { for: "password" }, "Password"), pass,
    h("div", { class: "row" }, h("button", { type: "submit", id: "login-button" }, "Log in")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearMessages();
    try {
      const r = await api("POST", LOGIN, { UserName: user.value, Password: pass.value });
      const token = r.headers.get("X-Auth-Token");
      if (token) sessionStorage.setItem("hvsim-token", token);
      const loc = r.headers.get("Location") || (r.data && r.data["@odata.id"]);
      if (loc) sessionStorage.setItem("hvsim-session", loc);
      await whoami();
      location.hash = "#/vms";
    } catch (err) {
      showError("Login failed: " + err.message);
    }
  });
  setMain(form);
  if (reason) showError(reason);
  user.focus();
}

async function whoami() {
  const r = await api("GET", "/api/session");
  me = r.data;
  $("who").textContent = me.user + " (" + me.role + ")";
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("nav-accounts").hidden = false;
}

async function logout() {
  stopLive();
  const uri = auth.sessionUri;
  try {
    if (uri) await api("DELETE", uri);
  } catch (e) { /* the session may already be gone */ }
  auth.forget();
  me = null;
  location.hash = "#/login";
  showNotice("Logged out.");
}

function powerText(p) { return h("span", { class: p === "on" ? "on" : "off" }, p === "on" ? "On" : "Off"); }

function vmListPage() {
  const body = h("tbody", {});
  setMain(h("h1", {}, "Virtual machines"),
    h("table", { id: "vm-table" },
      h("thead", {}, h("tr", {}, ["Name", "Power", "Tools", "Host name", "Guest OS", "Addresses"].map((t) => h("th", {}, t)))),
      body));
  live(null, (data) => {
    body.replaceChildren(...data.vms.map((v) => h("tr", { "data-vm": v.name },
      h("td", {}, h("a", { href: "#/vm/" + encodeURIComponent(v.name) }, v.name)),
      h("td", { class: "power" }, powerText(v.power)),
      h("td", { class: "tools" }, v.tools),
      h("td", { class: "hostname" }, v.hostname || ""),
      h("td", { class: "os" }, v.os || ""),
      h("td", { class: "addresses" }, (v.addresses || []).join(", ")))));
  });
}

const RESETS = [
  ["btn-on", "Power on", "On"],
  ["btn-off", "Power off", "ForceOff"],
  ["btn-graceful", "Graceful shutdown", "GracefulShutdown"],
  ["btn-reset", "Reset", "ForceRestart"],
  ["btn-cycle", "Power cycle", "PowerCycle"],
];

function vmPage(name) {
  const sys = "/redfish/v1/Systems/" + encodeURIComponent(name);
  const facts = h("dl", { class: "facts", id: "facts" });
  const nics = h("tbody", {});
  const vars = h("tbody", {});
  const mem = h("tbody", {});
  const sel = h("tbody", {});
  const bootCurrent = h("span", { id: "boot-current" });
  const op = canOperate();
  const powerButtons = RESETS.map(([id, label, type]) => h("button", {
    type: "button", id, disabled: !op,
    title: op ? undefined : "Your role (" + me.role + ") may not change power",
    onclick: () => act(label, () => api("POST", sys + "/Actions/ComputerSystem.Reset", { ResetType: type })),
  }, label));
  const target = h("select", { id: "boot-target", disabled: !op },
    ["None", "Pxe", "Cd", "Hdd"].map((t) => h("option", { value: t }, t)));
  const enabled = h("select", { id: "boot-enabled", disabled: !op },
    ["Once", "Continuous", "Disabled"].map((t) => h("option", { value: t }, t)));
  const bootApply = h("button", {
    type: "button", id: "boot-apply", disabled: !op,
    onclick: () => act("Boot override", () => api("PATCH", sys, {
      Boot: { BootSourceOverrideTarget: target.value, BootSourceOverrideEnabled: enabled.value },
    })),
  }, "Set boot override");
  setMain(
    h("h1", {}, "VM ", h("span", { id: "vm-name" }, name)),
    h("p", {},
      h("a", { href: "#/media/" + encodeURIComponent(name), id: "link-media" }, "Virtual media"), " · ",
      h("a", { href: "#/sol/" + encodeURIComponent(name), id: "link-sol" }, "Serial console")),
    facts,
    h("h2", {}, "Power"), h("div", { class: "row", id: "power-buttons" }, powerButtons),
    h("h2", {}, "Boot override"),
    h("div", { class: "row" }, "Current: ", bootCurrent),
    h("div", { class: "row" }, target, enabled, bootApply),
    h("h2", {}, "Network"),
    h("table", { id: "nics" }, h("thead", {}, h("tr", {}, h("th", {}, "MAC"), h("th", {}, "Addresses"))), nics),
    h("h2", {}, "Guest variables"),
    h("table", { id: "guestinfo" }, h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Value"))), vars),
    h("h2", {}, "Memory"),
    h("table", { id: "memory" }, h("thead", {}, h("tr", {}, h("th", {}, "Statistic"), h("th", {}, "Value"))), mem),
    h("h2", {}, "System event log"),
    h("table", { id: "sel" }, h("thead", {}, h("tr", {}, h("th", {}, "ID"), h("th", {}, "Time"), h("th", {}, "Event"))), sel));
  let first = true;
  live(name, (v) => {
    const row = (k, val, id) => [h("dt", {}, k), h("dd", { id }, val)];
    facts.replaceChildren(
      ...row("Power", powerText(v.power), "power"),
      ...row("Graceful request", v.pending_graceful || "none", "pending"),
      ...row("Tools", v.tools.status + (v.tools.version ? " (" + v.tools.version + ")" : ""), "tools"),
      ...row("Host name", v.hostname || "", "hostname"),
      ...row("Guest OS", v.os_full || v.os || "", "os"),
      ...row("Uptime", v.uptime_s === null || v.uptime_s === undefined ? "" : v.uptime_s + " s", "uptime"),
      ...row("Memory", v.memory_mb + " MiB", "memory-mb"),
      ...row("UUID", v.uuid, "uuid"),
      ...row("Console", v.console.attached ? "attached" : "none", "console"),
      ...row("Revision", String(v.revision), "revision"));
    const b = v.boot;
    bootCurrent.textContent = b.target === "none" ? "none"
      : b.target + (b.persistent ? " (continuous)" : " (once)");
    if (first && b.target !== "none") {
      const t = { pxe: "Pxe", cd: "Cd", hdd: "Hdd" }[b.target];
      if (t) target.value = t;
      enabled.value = b.persistent ? "Continuous" : "Once";
    }
    first = false;
    nics.replaceChildren(...(v.nics || []).map((n) => h("tr", {},
      h("td", {}, n.mac),
      h("td", { class: "ips" }, (n.ips || []).map((i) => i.addr + "/" + i.prefix).join(", ")))));
    vars.replaceChildren(...Object.entries(v.guestinfo || {}).map(([k, val]) => h("tr", {}, h("td", {}, k), h("td", {}, val))));
    const stats = v.memory && v.memory.stats ? Object.entries(v.memory.stats) : [];
    mem.replaceChildren(...stats.map(([k, s]) => h("tr", {}, h("td", {}, k),
      h("td", {}, s.value === null ? ""
        : (typeof s.value === "number" && !Number.isInteger(s.value) ? s.value.toFixed(1) : String(s.value))
          + (s.unit ? " " + s.unit : "")))));
    sel.replaceChildren(...(v.sel || []).slice().reverse().map((e) => h("tr", {},
      h("td", {}, String(e.id)), h("td", {}, e.time || ""), h("td", {}, e.text))));
  });
}

// ---- virtual media -------------------------------------------------------

const proxies = new Map(); // slot URI -> NbdServer
window.addEventListener("beforeunload", () => { for (const s of proxies.values()) s.stop("page closed"); });

function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

// The subprotocols that authenticate a WebSocket: the XSRF token of a
// cookie session (browsers cannot set headers on the upgrade).
function wsProtocols() {
  const x = auth.xsrf();
  return x ? [x] : [];
}

async function mediaPage(name) {
  const list = h("div", { id: "slots" });
  setMain(h("h1", {}, "Virtual media of ", h("a", { href: "#/vm/" + encodeURIComponent(name) }, name)), list);
  const base = "/redfish/v1/Managers/" + encodeURIComponent(name) + "-bmc/VirtualMedia";
  const render = async () => {
    let coll;
    try { coll = (await api("GET", base)).data; } catch (e) { showError(e.message); return; }
    const slots = [];
    for (const m of coll.Members || []) {
      try { slots.push((await api("GET", m["@odata.id"])).data); } catch (e) { showError(e.message); }
    }
    // Slots already drawn only get their state again: a file or URL the
    // user is choosing must survive a refresh.
    for (const s of slots) {
      const shown = $("slot-state-" + s.Id);
      if (shown) shown.replaceChildren(...slotState(s));
      else list.append(slotView(s, render));
    }
  };
  await render();
}

function slotState(s) {
  return [s.Inserted ? "inserted" : "empty", s.ConnectedVia ? " (" + s.ConnectedVia + ")" : "",
    s.Image ? " — " + s.Image : ""];
}

function slotView(s, refresh) {
  const uri = s["@odata.id"];
  const op = canOperate();
  const oem = s.Oem && s.Oem.OpenBMC;
  const proxy = s.TransferProtocolType === "OEM" && oem && oem.WebSocketEndpoint;
  const id = s.Id;
  const state = h("span", { id: "slot-state-" + id }, slotState(s));
  const eject = h("button", {
    type: "button", id: "eject-" + id, disabled: !op,
    onclick: () => act("Eject " + id, async () => {
      const p = proxies.get(uri);
      if (p) { p.stop("ejected"); proxies.delete(uri); } else {
        await api("POST", uri + "/Actions/VirtualMedia.EjectMedia", {});
      }
      setTimeout(refresh, 300);
    }),
  }, "Eject");
  if (proxy) {
    const file = h("input", { type: "file", id: "file-" + id, disabled: !op });
    const running = proxies.get(uri);
    const progress = h("span", { id: "proxy-state-" + id, class: "muted" },
      running ? running.status + " " + running.file.name : "");
    const serve = h("button", {
      type: "button", id: "serve-" + id, disabled: !op,
      onclick: () => {
        clearMessages();
        if (!file.files.length) { showError("Choose a file first."); return; }
        if (proxies.has(uri)) { showError("This page already serves a file in slot " + id + "."); return; }
        const srv = new NbdServer(file.files[0], wsUrl(oem.WebSocketEndpoint), wsProtocols(), (st, detail) => {
          srv.status = st;
          // The slot's view may have been drawn again meanwhile.
          const el = $("proxy-state-" + id);
          if (el) el.textContent = st + (detail ? ": " + detail : " " + srv.file.name);
          if (st === "serving") { showNotice("Serving " + file.files[0].name + " in slot " + id); setTimeout(refresh, 300); }
          if (st === "error") showError("Slot " + id + ": " + detail);
          if (st === "closed") { proxies.delete(uri); setTimeout(refresh, 300); }
        });
        proxies.set(uri, srv);
        srv.start();
      },
    }, "Serve file");
    return h("div", { class: "slot", "data-slot": id },
      h("h2", {}, id, " ", h("span", { class: "muted" }, "proxy: this browser serves a local file")),
      h("div", { class: "row" }, "State: ", state),
      h("div", { class: "row" }, file, serve, eject, progress));
  }
  const url = h("input", { type: "url", id: "url-" + id, size: 50, placeholder: "https://server/image.iso", disabled: !op });
  const insert = h("button", {
    type: "button", id: "insert-" + id, disabled: !op,
    onclick: () => act("Insert " + id, async () => {
      await api("POST", uri + "/Actions/VirtualMedia.InsertMedia", { Image: url.value, Inserted: true });
      await refresh();
    }),
  }, "Insert");
  return h("div", { class: "slot", "data-slot": id },
    h("h2", {}, id, " ", h("span", { class: "muted" }, "legacy: the BMC fetches a URL")),
    h("div", { class: "row" }, "State: ", state),
    h("div", { class: "row" }, url, insert, eject));
}

// ---- serial console ------------------------------------------------------

let solSocket = null;

function solPage(name) {
  const status = h("span", { id: "sol-status" }, "connecting");
  const pre = h("pre", { class: "term", id: "term" });
  const connect = h("button", { type: "button", id: "sol-connect", disabled: !canOperate() }, "Connect");
  const disconnect = h("button", { type: "button", id: "sol-disconnect" }, "Disconnect");
  setMain(h("h1", {}, "Serial console of ", h("a", { href: "#/vm/" + encodeURIComponent(name) }, name)),
    h("div", { class: "row" }, "State: ", status, " ", connect, disconnect), pre);
  const term = new MiniTerm(pre, (bytes) => {
    if (solSocket && solSocket.readyState === WebSocket.OPEN) solSocket.send(bytes);
  });
  const open = () => {
    if (solSocket) solSocket.close();
    clearMessages();
    status.textContent = "connecting";
    const ws = new WebSocket(wsUrl("/console/" + encodeURIComponent(name)), wsProtocols());
    ws.binaryType = "arraybuffer";
    solSocket = ws;
    ws.onopen = () => { status.textContent = "connected"; pre.focus(); };
    let said = "";
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        // The service's own messages (why it ends) come as text.
        said = e.data;
        showError("Serial console: " + said);
        return;
      }
      term.write(new Uint8Array(e.data));
    };
    ws.onclose = (e) => {
      if (solSocket === ws) solSocket = null;
      status.textContent = "closed" + (e.reason ? ": " + e.reason : "");
      if (e.reason && !said) showError("Serial console: " + e.reason);
    };
  };
  connect.addEventListener("click", open);
  disconnect.addEventListener("click", () => { if (solSocket) solSocket.close(1000, "closed by the user"); });
  if (canOperate()) open(); else status.textContent = "your role (" + me.role + ") may not use the console";
}

// ---- accounts ------------------------------------------------------------

async function accountsPage() {
  const body = h("tbody", {});
  const admin = isAdmin();
  const user = h("input", { id: "new-user", placeholder: "name", disabled: !admin });
  const pass = h("input", { id: "new-pass", type: "password", placeholder: "password", disabled: !admin });
  const role = h("select", { id: "new-role", disabled: !admin },
    ["ReadOnly", "Operator", "Administrator"].map((r) => h("option", { value: r }, r)));
  const add = h("button", {
    type: "button", id: "add-user", disabled: !admin,
    onclick: () => act("Add account " + user.value, async () => {
      await api("POST", "/redfish/v1/AccountService/Accounts", { UserName: user.value, Password: pass.value, RoleId: role.value });
      user.value = ""; pass.value = "";
      await load();
    }),
  }, "Add account");
  setMain(h("h1", {}, "Accounts"),
    h("table", { id: "accounts" }, h("thead", {}, h("tr", {}, ["Id", "User", "Role", "Enabled", "Password", ""].map((t) => h("th", {}, t)))), body),
    h("h2", {}, "New account"), h("div", { class: "row" }, user, pass, role, add));
  const load = async () => {
    let coll;
    try { coll = (await api("GET", "/redfish/v1/AccountService/Accounts")).data; } catch (e) { showError(e.message); return; }
    const rows = [];
    for (const m of coll.Members || []) {
      let a;
      try { a = (await api("GET", m["@odata.id"])).data; } catch (e) { continue; }
      const uri = a["@odata.id"];
      const mine = a.UserName === me.user;
      const pw = h("input", { type: "password", id: "pw-" + a.UserName, placeholder: "new password", disabled: !(admin || mine) });
      rows.push(h("tr", { "data-user": a.UserName },
        h("td", {}, a.Id), h("td", {}, a.UserName), h("td", {}, a.RoleId), h("td", {}, a.Enabled ? "yes" : "no"),
        h("td", {}, pw, h("button", {
          type: "button", id: "setpw-" + a.UserName, disabled: !(admin || mine),
          onclick: () => act("Change password of " + a.UserName, async () => {
            await api("PATCH", uri, { Password: pw.value });
            pw.value = "";
          }),
        }, "Change")),
        h("td", {}, h("button", {
          type: "button", id: "delete-" + a.UserName, disabled: !admin || mine,
          onclick: () => act("Delete account " + a.UserName, async () => { await api("DELETE", uri); await load(); }),
        }, "Delete"))));
    }
    body.replaceChildren(...rows);
  };
  await load();
}

// ---- router --------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/vms";
  const [, page, arg] = hash.split("/");
  const name = arg ? decodeURIComponent(arg) : "";
  if (page !== "media") { /* keep proxies: only closing the page or Eject ends them */ }
  if (page !== "sol" && solSocket) { solSocket.close(1000, "left the page"); solSocket = null; }
  stopLive();
  if (page === "login" || hash === "#/login") {
    const why = loginReason;
    loginReason = null;
    loginPage(why);
    return;
  }
  if (!me) {
    try { await whoami(); } catch (e) { loginPage(); return; }
  }
  switch (page) {
    case "vm": vmPage(name); break;
    case "media": await mediaPage(name); break;
    case "sol": solPage(name); break;
    case "accounts": await accountsPage(); break;
    default: vmListPage();
  }
}

window.addEventListener("hashchange", () => { clearMessages(); route(); });
document.addEventListener("DOMContentLoaded", () => {
  $("logout").addEventListener("click", logout);
  route();
});
