// Staff shelves page: signs in for a bearer token, then follows the inventory stream.
// The stream is read with fetch (EventSource cannot send an Authorization header).
"use strict";

(() => {
  const TOKEN_KEY = "stackpulse.token";
  const MAX_RETRY_MS = 30000;
  const app = {
    site: null,
    sites: [],
    lists: { misplaced: [], missing: [], reshelving: [], tasks: [] },
    controller: null,
    retryMs: 1000,
    retryTimer: null,
  };
  const $ = (id) => document.getElementById(id);

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function setConnection(state, text) {
    const conn = $("conn");
    conn.dataset.state = state;
    $("conn-text").textContent = text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function section(id) {
    return el("span", { class: "section" }, id);
  }

  function when(ts) {
    if (!ts) return "never";
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return ts;
    const tz = app.site && app.site.timezone;
    try {
      return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short", timeZone: tz });
    } catch (_err) {
      return d.toLocaleString();
    }
  }

  function itemLabel(x) {
    return `${x.item} (${x.call_number}, ${x.title})`;
  }

  // ---- rendering ---------------------------------------------------------------------

  function floorName(floor) {
    return floor === null || floor === undefined ? "No floor" : `Floor ${floor}`;
  }

  function renderTasks() {
    const floors = app.lists.tasks;
    const box = $("task-floors");
    box.replaceChildren();
    let n = 0;
    for (const f of floors) {
      const list = el("ol", { class: "tasks" });
      for (const t of f.tasks) {
        n += 1;
        list.append(
          el(
            "li",
            { "data-item": t.item, "data-testid": "task" },
            el(
              "p",
              { class: "task-move" },
              `Move ${itemLabel(t)} from `,
              section(t.from_section),
              " to ",
              section(t.to_section),
            ),
            el("p", { class: "meta" }, `Open since ${when(t.opened_at)}`),
          ),
        );
      }
      box.append(
        el(
          "section",
          { class: "floor", "data-floor": f.floor === null ? "none" : String(f.floor) },
          el("h3", {}, floorName(f.floor)),
          list,
        ),
      );
    }
    $("tasks-empty").hidden = n > 0;
    $("n-tasks").textContent = String(n);
  }

  function renderItems(name, line) {
    const items = app.lists[name];
    const list = $(`${name}-list`);
    list.replaceChildren(
      ...items.map((x) =>
        el(
          "li",
          { "data-item": x.item, "data-kind": name },
          el("p", { class: "title" }, itemLabel(x)),
          el("p", { class: "meta" }, ...line(x)),
        ),
      ),
    );
    $(`${name}-empty`).hidden = items.length > 0;
    $(`n-${name}`).textContent = String(items.length);
  }

  function render() {
    renderTasks();
    renderItems("misplaced", (x) => [
      "On ",
      section(x.seen_section),
      ", belongs in ",
      ...x.expected_sections.flatMap((s, i) => (i ? [" or ", section(s)] : [section(s)])),
      ` · since ${when(x.since)}`,
    ]);
    renderItems("missing", (x) => [
      "Last seen ",
      x.last_seen_section ? section(x.last_seen_section) : "nowhere",
      ` · ${when(x.last_seen_at)}`,
    ]);
    renderItems("reshelving", (x) => [
      `Checked in ${when(x.checked_in_at)} · overdue since ${when(x.overdue_since)}`,
    ]);
  }

  // ---- sign-in -----------------------------------------------------------------------

  function showLogin(message) {
    stopStream();
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    setConnection("signed-out", "Signed out");
    $("username").focus();
  }

  async function login(event) {
    event.preventDefault();
    const body = new URLSearchParams({
      grant_type: "password",
      username: $("username").value,
      password: $("password").value,
    });
    let answer;
    try {
      answer = await fetch("/api/v1/auth/token", { method: "POST", body });
    } catch (_err) {
      showLogin("The server cannot be reached. Try again in a moment.");
      return;
    }
    if (!answer.ok) {
      showLogin(answer.status === 401 ? "Wrong username or password." : `Sign-in failed (${answer.status}).`);
      return;
    }
    const data = await answer.json();
    sessionStorage.setItem(TOKEN_KEY, data.access_token);
    $("password").value = "";
    start();
  }

  function logout() {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  }

  // ---- the stream --------------------------------------------------------------------

  function stopStream() {
    clearTimeout(app.retryTimer);
    if (app.controller) app.controller.abort();
    app.controller = null;
  }

  function retryLater(text) {
    setConnection("offline", text);
    app.retryTimer = setTimeout(connect, app.retryMs);
    app.retryMs = Math.min(app.retryMs * 2, MAX_RETRY_MS);
  }

  function dispatch(name, data) {
    let body;
    try {
      body = JSON.parse(data);
    } catch (_err) {
      return;
    }
    if (name === "snapshot") {
      for (const key of Object.keys(app.lists)) app.lists[key] = body[key] || [];
      setConnection("live", "Live");
      app.retryMs = 1000;
    } else if (name in app.lists) {
      app.lists[name] = body;
      $("announce").textContent = `${name} updated`;
    } else {
      return;
    }
    render();
  }

  async function connect() {
    stopStream();
    const controller = new AbortController();
    app.controller = controller;
    setConnection("connecting", "Connecting…");
    const url = `/api/v1/sites/${encodeURIComponent(app.site.id)}/inventory/stream`;
    let answer;
    try {
      answer = await fetch(url, {
        headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
        signal: controller.signal,
        cache: "no-store",
      });
    } catch (_err) {
      if (!controller.signal.aborted) retryLater("Offline — retrying");
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Your sign-in has expired. Please sign in again.");
      return;
    }
    if (answer.status === 403) {
      showLogin(`This account is not staff of ${app.site.name}.`);
      return;
    }
    if (!answer.ok || !answer.body) {
      retryLater(`Server error ${answer.status} — retrying`);
      return;
    }
    const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl;
        while ((nl = buffer.search(/\r\n|\n|\r/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            if (data.length) dispatch(event, data.join("\n"));
            event = "message";
            data = [];
          } else if (line.startsWith(":")) {
            continue; // a keep-alive comment
          } else {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data.push(val);
          }
        }
      }
    } catch (_err) {
      // aborted or the connection dropped: handled below
    }
    if (!controller.signal.aborted) retryLater("Reconnecting…");
  }

  // ---- start -------------------------------------------------------------------------

  function pickSite() {
    const match = location.pathname.match(/^\/staff\/([a-z0-9-]{1,32})\/?$/);
    const wanted = match ? match[1] : null;
    return app.sites.find((s) => s.id === wanted) || app.sites[0] || null;
  }

  function start() {
    if (!token()) {
      showLogin("");
      return;
    }
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    render();
    connect();
  }

  async function boot() {
    try {
      const answer = await fetch("/api/v1/sites");
      app.sites = await answer.json();
    } catch (_err) {
      setConnection("offline", "Offline — retrying");
      setTimeout(boot, app.retryMs);
      app.retryMs = Math.min(app.retryMs * 2, MAX_RETRY_MS);
      return;
    }
    app.site = pickSite();
    if (!app.site) {
      setConnection("offline", "No sites configured");
      return;
    }
    $("site-name").textContent = app.site.name;
    document.title = `Shelves · ${app.site.name} · StackPulse staff`;
    const select = $("site-select");
    select.replaceChildren(...app.sites.map((s) => el("option", { value: s.id }, s.name)));
    select.value = app.site.id;
    $("site-picker").hidden = app.sites.length < 2;
    select.addEventListener("change", () => {
      location.assign(`/staff/${encodeURIComponent(select.value)}`);
    });
    $("login").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    start();
  }

  boot();
})();
