// cobot_cell HMI live page: follows the server's live stream, logs in, sends commands with the session's CSRF token.
"use strict";

const hmi = { user: null, role: null, csrf: null, commands: [], live: null, stream: null };

function $(id) { return document.getElementById(id); }

function say(text, bad) {
  const m = $("message");
  m.textContent = text;
  m.className = "message" + (bad ? " bad" : " good");
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (hmi.csrf) headers["X-CSRF-Token"] = hmi.csrf;
  let resp;
  try {
    resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  } catch (e) {
    return { ok: false, message: "no connection to the HMI: " + e.message };
  }
  let data = {};
  try { data = await resp.json(); } catch (e) { data = { message: resp.status + " " + resp.statusText }; }
  if (resp.status === 403 && hmi.user) await refreshSession();   // the session may have expired
  return { ok: resp.ok && data.ok !== false, status: resp.status, message: data.message || "", data };
}

function setSession(s) {
  hmi.user = s.user || null;
  hmi.role = s.role || null;
  hmi.csrf = s.csrf || null;
  hmi.commands = s.commands || [];
  $("login").hidden = !!hmi.user;
  $("whoami").hidden = $("logout").hidden = !hmi.user;
  $("whoami").textContent = hmi.user ? hmi.user + " (" + hmi.role + ")" : "";
  $("setup").hidden = !hmi.commands.includes("job");
  if (hmi.live) render(hmi.live);
  if (hmi.user && hmi.stream && hmi.stream.readyState === EventSource.CLOSED) connect();
}

async function refreshSession() {
  try {
    setSession(await (await fetch("/api/session", { credentials: "same-origin" })).json());
  } catch (e) { setSession({ user: null }); }
}

async function command(name) {
  const r = await post("/api/command", { command: name });
  say(r.message || (r.ok ? name + " accepted" : name + " refused"), !r.ok);
}

function fmtTime(t) { return t === null || t === undefined ? "" : t.toFixed(1) + " s"; }

// Lists are rebuilt only when what they show changes, so a button is not replaced under the operator's finger.
function unchanged(el, value) {
  const sig = JSON.stringify(value);
  if (el.dataset.sig === sig) return true;
  el.dataset.sig = sig;
  return false;
}

function renderCommands(d) {
  const nav = $("commands");
  if (unchanged(nav, [d.commands, hmi.user, hmi.commands])) return;
  nav.replaceChildren();
  for (const c of d.commands) {
    const b = document.createElement("button");
    b.textContent = c;
    b.dataset.command = c;
    b.className = "cmd cmd-" + c;
    const may = hmi.commands.includes(c);
    b.disabled = !may;
    b.title = hmi.user ? (may ? c : "your role may not " + c) : "log in to send commands";
    b.addEventListener("click", () => command(c));
    nav.appendChild(b);
  }
  if (!d.commands.length) {
    const s = document.createElement("span");
    s.textContent = "no command accepted in this state";
    nav.appendChild(s);
  }
}

function renderFaults(d) {
  const ul = $("faults");
  if (unchanged(ul, [d.faults, hmi.user, hmi.commands])) return;
  ul.replaceChildren();
  if (!d.faults.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = "none";
    ul.appendChild(li);
    return;
  }
  for (const f of d.faults) {
    const li = document.createElement("li");
    li.className = "fault" + (f.acknowledged ? " acknowledged" : "");
    li.dataset.code = f.code;
    const t = document.createElement("span");
    t.textContent = f.code + " on " + f.source + " at " + fmtTime(f.raised) + ": " + f.message +
      (f.acknowledged ? " (acknowledged)" : "");
    li.appendChild(t);
    if (!f.acknowledged) {
      const b = document.createElement("button");
      b.textContent = "Acknowledge";
      b.className = "ack";
      b.dataset.command = "acknowledge";
      b.disabled = !hmi.commands.includes("acknowledge");
      b.title = b.disabled ? "log in as an operator to acknowledge" : "acknowledge";
      b.addEventListener("click", () => command("acknowledge"));
      li.appendChild(b);
    }
    ul.appendChild(li);
  }
}

function render(d) {
  hmi.live = d;
  const banner = $("banner");
  banner.style.background = d.colour.background;
  banner.style.color = d.colour.text;
  banner.dataset.state = d.state;
  $("cell").textContent = d.cell;
  $("state").textContent = d.state;
  $("parts-done").textContent = d.parts_done;
  $("parts-target").textContent = d.parts_target;
  $("job").textContent = d.job || "-";
  $("part").textContent = d.part === null ? "-" : d.part;
  $("flow").textContent = d.starved ? "· starved: no part at the infeed" : d.blocked ? "· blocked: pallet full" : "";
  $("authority").textContent = d.authority || "-";
  renderCommands(d);
  const tb = $("steps").tBodies[0];
  tb.replaceChildren();
  for (const s of d.steps) {
    const tr = tb.insertRow();
    tr.insertCell().textContent = s.cobot;
    tr.insertCell().textContent = s.step || "idle";
    tr.insertCell().textContent = s.since === null ? "" : fmtTime(d.time - s.since) + " ago";
  }
  renderFaults(d);
  // The charts are SVG drawn by the server, their text escaped there.
  for (const name of ["gantt", "trend", "oee"]) {
    if (!unchanged($(name), d.charts[name])) $(name).innerHTML = d.charts[name];
  }
  if (document.activeElement !== $("job-input")) $("job-input").value = d.job;
  if (document.activeElement !== $("parts-input")) $("parts-input").value = d.parts_target;
}

function connect() {
  const es = new EventSource("/api/stream");
  hmi.stream = es;
  es.addEventListener("live", (e) => {
    $("link").textContent = "live";
    $("link").className = "";
    render(JSON.parse(e.data));
  });
  es.onerror = () => {
    // closed for good: this address shows the cell to logged-in users only
    const closed = es.readyState === EventSource.CLOSED;
    $("link").textContent = closed ? "log in to view the cell" : "connection lost: reconnecting...";
    $("link").className = "bad";
  };
}

document.addEventListener("DOMContentLoaded", async () => {
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await post("/api/login", { user: $("user").value, password: $("password").value });
    $("password").value = "";
    if (r.ok) { setSession(r.data); say("logged in as " + r.data.user + " (" + r.data.role + ")", false); }
    else say(r.message || "login failed", true);
  });
  $("logout").addEventListener("click", async () => {
    await post("/api/logout", {});
    setSession({ user: null });
    say("logged out", false);
  });
  $("job-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const results = [];
    const job = $("job-input").value.trim();
    const parts = parseInt($("parts-input").value, 10);
    if (hmi.live && job && job !== hmi.live.job) results.push(await post("/api/parameter", { name: "job", value: job }));
    if (hmi.live && parts !== hmi.live.parts_target) {
      results.push(await post("/api/parameter", { name: "parts", value: parts }));
    }
    const bad = results.find((r) => !r.ok);
    say(bad ? bad.message : (results.length ? results.map((r) => r.message).join("; ") : "nothing changed"), !!bad);
  });
  await refreshSession();
  connect();
});
