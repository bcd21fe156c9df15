// Staff console: signs in for a bearer token, follows the site's alert stream, acks and
// clears alerts, and shows the reshelving tasks. The stream is read with fetch
// (EventSource cannot send an Authorization header).
"use strict";

(() => {
  const TOKEN_KEY = "stackpulse.token"; // shared with the shelves page: one sign-in per tab
  const MAX_RETRY_MS = 30000;
  const TASKS_EVERY_MS = 30000;
  const RECENT_MAX = 20;
  const RANK = { critical: 0, warning: 1, info: 2 };
  const STATE_TEXT = {
    active_unack: "New",
    active_ack: "Acknowledged",
    cleared_unack: "Cleared",
    cleared_ack: "Cleared",
  };
  const RULE_TEXT = {}; // rule id -> label: rule ids are shown as they are, underscores as spaces
  const app = {
    site: null,
    sites: [],
    me: null,
    alerts: new Map(), // id -> active alert
    recent: [], // cleared alerts, newest first
    tasks: [],
    controller: null,
    retryMs: 1000,
    retryTimer: null,
    tasksTimer: null,
  };
  const $ = (id) => document.getElementById(id);

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function auth() {
    return { Authorization: `Bearer ${token()}` };
  }

  function setConnection(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-") || k.startsWith("aria-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
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

  function ruleName(rule) {
    return RULE_TEXT[rule] || rule.replace(/_/g, " ");
  }

  // ---- rendering ---------------------------------------------------------------------

  function stateLine(a) {
    const parts = [];
    if (a.acked_by) parts.push(`Acknowledged by ${a.acked_by} · ${when(a.acked_at)}`);
    if (a.cleared_at) {
      parts.push(a.cleared_by ? `Cleared by ${a.cleared_by} · ${when(a.cleared_at)}` : `Cleared by itself · ${when(a.cleared_at)}`);
    }
    return parts.join(" — ");
  }

  function alertItem(a, withButtons) {
    const canChange = app.me && app.me.scopes.includes("alerts:write");
    const buttons = withButtons && canChange
      ? el(
          "div",
          { class: "actions" },
          a.state === "active_unack"
            ? el("button", { type: "button", class: "primary ack", "data-action": "ack", "data-id": a.id }, "Acknowledge")
            : null,
          el("button", { type: "button", class: "secondary clear", "data-action": "clear", "data-id": a.id }, "Clear"),
        )
      : null;
    return el(
      "li",
      { "data-id": a.id, "data-state": a.state, "data-severity": a.severity, "data-rule": a.rule, "data-testid": "alert" },
      el(
        "p",
        { class: "alert-head" },
        el("span", { class: `sev sev-${a.severity}` }, a.severity),
        el("span", { class: "state", "data-testid": "alert-state" }, STATE_TEXT[a.state] || a.state),
        a.escalations ? el("span", { class: "escalated" }, `escalated ×${a.escalations}`) : null,
      ),
      el("p", { class: "title" }, `${ruleName(a.rule)}: `, el("span", { class: "subject" }, a.subject)),
      el("p", { class: "message" }, a.message),
      el("p", { class: "meta" }, `Open since ${when(a.opened_at)}`),
      el("p", { class: "meta who", "data-testid": "alert-who" }, stateLine(a)),
      buttons,
    );
  }

  function visible(a) {
    const sev = $("filter-severity").value;
    const rule = $("filter-rule").value;
    if (sev && a.severity !== sev) return false;
    if (rule && a.rule !== rule) return false;
    if ($("filter-unacked").checked && a.state !== "active_unack") return false;
    return true;
  }

  function renderRules() {
    const select = $("filter-rule");
    const chosen = select.value;
    const rules = new Set([...app.alerts.values()].map((a) => a.rule));
    if (chosen) rules.add(chosen);
    select.replaceChildren(
      el("option", { value: "" }, "All"),
      ...[...rules].sort().map((r) => el("option", { value: r }, ruleName(r))),
    );
    select.value = chosen;
  }

  function renderAlerts() {
    renderRules();
    const all = [...app.alerts.values()];
    const shown = all.filter(visible).sort(
      (x, y) =>
        (x.state === "active_unack" ? 0 : 1) - (y.state === "active_unack" ? 0 : 1) ||
        (RANK[x.severity] ?? 3) - (RANK[y.severity] ?? 3) ||
        (x.opened_at < y.opened_at ? 1 : x.opened_at > y.opened_at ? -1 : 0),
    );
    $("alert-list").replaceChildren(...shown.map((a) => alertItem(a, true)));
    $("alerts-empty").hidden = shown.length > 0;
    $("alerts-empty").textContent = all.length ? "No alerts match the filters." : "No active alerts. All is well.";
    $("n-alerts").textContent = String(all.length);
    $("recent-list").replaceChildren(...app.recent.map((a) => alertItem(a, false)));
    $("recent-empty").hidden = app.recent.length > 0;
  }

  function floorName(floor) {
    return floor === null || floor === undefined ? "No floor" : `Floor ${floor}`;
  }

  function renderTasks() {
    const box = $("task-floors");
    box.replaceChildren();
    let n = 0;
    for (const f of app.tasks) {
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
              `Move ${t.item} (${t.call_number}, ${t.title}) from `,
              el("span", { class: "section" }, t.from_section),
              " to ",
              el("span", { class: "section" }, t.to_section),
            ),
            el("p", { class: "meta" }, `Open since ${when(t.opened_at)}`),
          ),
        );
      }
      box.append(el("section", { class: "floor" }, el("h3", {}, floorName(f.floor)), list));
    }
    $("tasks-empty").hidden = n > 0 || !$("tasks-off").hidden;
    $("n-tasks").textContent = String(n);
  }

  // ---- changes -----------------------------------------------------------------------

  function remember(a) {
    if (a.state === "active_unack" || a.state === "active_ack") {
      app.alerts.set(a.id, a);
      return;
    }
    app.alerts.delete(a.id);
    app.recent = [a, ...app.recent.filter((x) => x.id !== a.id)].slice(0, RECENT_MAX);
  }

  function newer(a) {
    const known = app.alerts.get(a.id);
    return !known || known.updated_at <= a.updated_at;
  }

  async function act(action, id, button) {
    button.disabled = true;
    $("action-error").hidden = true;
    let answer;
    try {
      answer = await fetch(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, {
        method: "POST",
        headers: auth(),
      });
    } catch (_err) {
      showActionError("The server cannot be reached. Try again in a moment.");
      button.disabled = false;
      return;
    }
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Your sign-in has expired. Please sign in again.");
      return;
    }
    if (!answer.ok) {
      let detail = `${answer.status}`;
      try {
        detail = (await answer.json()).detail || detail;
      } catch (_err) {
        // not JSON
      }
      showActionError(`Could not ${action === "ack" ? "acknowledge" : "clear"}: ${detail}`);
      button.disabled = false;
      return;
    }
    const alert = await answer.json();
    if (newer(alert)) remember(alert);
    $("announce").textContent = `${ruleName(alert.rule)} ${alert.subject}: ${STATE_TEXT[alert.state]}`;
    renderAlerts();
  }

  function showActionError(text) {
    $("action-error").textContent = text;
    $("action-error").hidden = false;
  }

  // ---- sign-in -----------------------------------------------------------------------

  function showLogin(message) {
    stopStream();
    clearInterval(app.tasksTimer);
    $("board").hidden = true;
    $("logout").hidden = true;
    $("whoami").textContent = "";
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

  // ---- the alert stream --------------------------------------------------------------

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
      app.alerts = new Map(body.alerts.map((a) => [a.id, a]));
      setConnection("live", "Live");
      app.retryMs = 1000;
    } else if (name === "transition") {
      if (!newer(body.alert)) return;
      remember(body.alert);
      $("announce").textContent = `${ruleName(body.alert.rule)} ${body.alert.subject}: ${body.kind}`;
    } else {
      return;
    }
    renderAlerts();
  }

  async function connect() {
    stopStream();
    const controller = new AbortController();
    app.controller = controller;
    setConnection("connecting", "Connecting…");
    const url = `/api/v1/sites/${encodeURIComponent(app.site.id)}/alerts/stream`;
    let answer;
    try {
      answer = await fetch(url, {
        headers: { ...auth(), Accept: "text/event-stream" },
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

  // ---- reshelving tasks (the inventory API; absent when inventory does not run) -------

  async function loadTasks() {
    let answer;
    try {
      answer = await fetch(`/api/v1/sites/${encodeURIComponent(app.site.id)}/tasks`, {
        headers: auth(),
        cache: "no-store",
      });
    } catch (_err) {
      return; // the next round tries again; the alert stream shows the connection
    }
    if (answer.status === 404) {
      $("tasks-off").hidden = false;
      clearInterval(app.tasksTimer);
    } else if (answer.ok) {
      $("tasks-off").hidden = true;
      app.tasks = await answer.json();
    }
    renderTasks();
  }

  // ---- start -------------------------------------------------------------------------

  function pickSite() {
    const match = location.pathname.match(/^\/console\/([a-z0-9-]{1,32})\/?$/);
    const wanted = match ? match[1] : null;
    return app.sites.find((s) => s.id === wanted) || app.sites[0] || null;
  }

  async function start() {
    if (!token()) {
      showLogin("");
      return;
    }
    try {
      const answer = await fetch("/api/v1/auth/me", { headers: auth() });
      if (answer.status === 401 || answer.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(answer.status === 401 ? "" : "This account may not see the console.");
        return;
      }
      if (answer.ok) app.me = await answer.json();
    } catch (_err) {
      // offline: the stream retries and says so
    }
    $("whoami").textContent = app.me ? app.me.username : "";
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    renderAlerts();
    renderTasks();
    connect();
    loadTasks();
    clearInterval(app.tasksTimer);
    app.tasksTimer = setInterval(loadTasks, TASKS_EVERY_MS);
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
    document.title = `Alerts · ${app.site.name} · StackPulse staff`;
    const select = $("site-select");
    select.replaceChildren(...app.sites.map((s) => el("option", { value: s.id }, s.name)));
    select.value = app.site.id;
    $("site-picker").hidden = app.sites.length < 2;
    select.addEventListener("change", () => {
      location.assign(`/console/${encodeURIComponent(select.value)}`);
    });
    for (const id of ["filter-severity", "filter-rule", "filter-unacked"]) {
      $(id).addEventListener("change", renderAlerts);
    }
    $("alert-list").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button.dataset.action, button.dataset.id, button);
    });
    $("login").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    start();
  }

  boot();
})();
