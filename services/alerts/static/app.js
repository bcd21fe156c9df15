// Staff console: signs in for a bearer token, follows the site's alert stream, acks and
// clears alerts, and shows the reshelving tasks. The stream is read with fetch
// (EventSource cannot send an Authorization header).
"use strict";

(() => {
  const SP = window.StackPulse; // its token is shared with the shelves page: one sign-in per tab
  const { $, el } = SP;
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
    tasksTimer: null,
  };
  const { session, feed } = SP.staffPage(app, {
    path: "alerts/stream",
    start,
    stop: () => {
      clearInterval(app.tasksTimer);
      $("whoami").textContent = "";
    },
    onEvent: dispatch,
  });

  function when(ts) {
    return SP.when(ts, app.site);
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

  function renderTasks() {
    const n = SP.renderTaskFloors(app.tasks, app.site);
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
        headers: SP.authHeaders(),
      });
    } catch (_err) {
      showActionError("The server cannot be reached. Try again in a moment.");
      button.disabled = false;
      return;
    }
    if (answer.status === 401) {
      session.expired();
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

  // ---- the alert stream --------------------------------------------------------------

  function dispatch(name, body) {
    if (name === "snapshot") {
      app.alerts = new Map(body.alerts.map((a) => [a.id, a]));
      feed.live();
    } else if (name === "transition") {
      if (!newer(body.alert)) return;
      remember(body.alert);
      $("announce").textContent = `${ruleName(body.alert.rule)} ${body.alert.subject}: ${body.kind}`;
    } else {
      return;
    }
    renderAlerts();
  }

  // ---- reshelving tasks (the inventory API; absent when inventory does not run) -------

  async function loadTasks() {
    let answer;
    try {
      answer = await fetch(`/api/v1/sites/${encodeURIComponent(app.site.id)}/tasks`, {
        headers: SP.authHeaders(),
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

  async function start() {
    if (!SP.token()) {
      session.showLogin("");
      return;
    }
    try {
      const answer = await fetch("/api/v1/auth/me", { headers: SP.authHeaders() });
      if (answer.status === 401 || answer.status === 403) {
        session.forget();
        session.showLogin(answer.status === 401 ? "" : "This account may not see the console.");
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
    feed.connect();
    loadTasks();
    clearInterval(app.tasksTimer);
    app.tasksTimer = setInterval(loadTasks, TASKS_EVERY_MS);
  }

  async function boot() {
    const offline = () => feed.retryLater("Offline — retrying", boot);
    if (!(await SP.loadSites(app, /^\/console\/([a-z0-9-]{1,32})\/?$/, offline))) return;
    document.title = `Alerts · ${app.site.name} · StackPulse staff`;
    SP.siteHeader(app.sites, app.site, "/console/");
    for (const id of ["filter-severity", "filter-rule", "filter-unacked"]) {
      $(id).addEventListener("change", renderAlerts);
    }
    $("alert-list").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) act(button.dataset.action, button.dataset.id, button);
    });
    session.listen();
    start();
  }

  boot();
})();
