// Staff shelves page: signs in for a bearer token, then follows the inventory stream.
// The stream is read with fetch (EventSource cannot send an Authorization header).
"use strict";

(() => {
  const SP = window.StackPulse;
  const { $, el } = SP;
  const app = {
    site: null,
    sites: [],
    lists: { misplaced: [], missing: [], reshelving: [], tasks: [] },
  };
  const { session, feed } = SP.staffPage(app, { path: "inventory/stream", start, onEvent: dispatch });

  function section(id) {
    return el("span", { class: "section" }, id);
  }

  function when(ts) {
    return SP.when(ts, app.site);
  }

  function itemLabel(x) {
    return `${x.item} (${x.call_number}, ${x.title})`;
  }

  // ---- rendering ---------------------------------------------------------------------

  function renderTasks() {
    const n = SP.renderTaskFloors(app.lists.tasks, app.site, { floorAttr: true });
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

  // ---- the stream --------------------------------------------------------------------

  function dispatch(name, body) {
    if (name === "snapshot") {
      for (const key of Object.keys(app.lists)) app.lists[key] = body[key] || [];
      feed.live();
    } else if (name in app.lists) {
      app.lists[name] = body;
      $("announce").textContent = `${name} updated`;
    } else {
      return;
    }
    render();
  }

  // ---- start -------------------------------------------------------------------------

  function start() {
    if (!SP.token()) {
      session.showLogin("");
      return;
    }
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    render();
    feed.connect();
  }

  async function boot() {
    const offline = () => feed.retryLater("Offline — retrying", boot);
    if (!(await SP.loadSites(app, /^\/staff\/([a-z0-9-]{1,32})\/?$/, offline))) return;
    document.title = `Shelves · ${app.site.name} · StackPulse staff`;
    SP.siteHeader(app.sites, app.site, "/staff/");
    session.listen();
    start();
  }

  boot();
})();
