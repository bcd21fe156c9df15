// Manager pages: the live view (tiles over three event streams, charts and lists polled)
// and the printable daily report. Both sign in for a bearer token kept in sessionStorage;
// streams are read with fetch because EventSource cannot send an Authorization header.
"use strict";

(() => {
  const SP = window.StackPulse;
  const { $, el, setConnection } = SP;
  const POLL_MS = { floors: 300000, devices: 60000, demand: 60000 };
  const page = document.body.dataset.page;
  const app = {
    site: null,
    sites: [],
    zones: new Map(),
    seats: new Map(),
    alerts: new Map(),
    shelves: { misplaced: null, missing: null },
    floors: [],
    streams: new Map(), // name -> {controller, live, retryMs, timer}
    timers: [],
  };

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const session = SP.session({
    stop: stopAll,
    start,
    forbidden: () => `This account is not a manager of ${app.site.name}.`,
  });
  const authFetch = session.authFetch;

  function stopAll() {
    for (const s of app.streams.values()) {
      clearTimeout(s.timer);
      s.controller.abort();
    }
    app.streams.clear();
    for (const t of app.timers) clearInterval(t);
    app.timers = [];
  }

  // ---- event streams -----------------------------------------------------------------

  function streamState() {
    const all = [...app.streams.values()];
    if (all.length && all.every((s) => s.live)) setConnection("live", "Live");
    else if (all.some((s) => s.offline)) setConnection("offline", "Reconnecting…");
    else setConnection("connecting", "Connecting…");
  }

  function follow(name, url, onEvent) {
    const state = { controller: new AbortController(), live: false, offline: false, retryMs: 1000, timer: null };
    app.streams.set(name, state);
    const retry = () => {
      if (state.controller.signal.aborted) return;
      state.live = false;
      state.offline = true;
      streamState();
      state.timer = setTimeout(() => {
        state.controller = new AbortController();
        run();
      }, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, SP.MAX_RETRY_MS);
    };
    const run = async () => {
      let answer;
      try {
        answer = await authFetch(url, {
          headers: { Accept: "text/event-stream" },
          signal: state.controller.signal,
        });
      } catch (_err) {
        retry();
        return;
      }
      if (answer === null) return;
      if (!answer.ok || !answer.body) {
        retry();
        return;
      }
      await SP.readEvents(answer.body, (event, data) => {
        let body = null;
        try {
          body = JSON.parse(data);
        } catch (_err) {
          body = null;
        }
        if (body === null) return;
        if (event === "snapshot") {
          state.live = true;
          state.offline = false;
          state.retryMs = 1000;
          streamState();
        }
        onEvent(event, body);
      });
      retry();
    };
    run();
  }

  // ---- the live tiles ----------------------------------------------------------------

  function fmt(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString();
  }

  function renderPeople() {
    let people = 0;
    let capacity = 0;
    let few = 0;
    for (const z of app.zones.values()) {
      capacity += z.capacity;
      if (z.occupancy === null) few += 1;
      else people += z.occupancy;
    }
    $("people").textContent = fmt(people);
    $("capacity").textContent = fmt(capacity);
    const share = capacity ? Math.min(1, people / capacity) : 0;
    $("people-bar").style.width = `${(share * 100).toFixed(1)}%`;
    $("tile-people").dataset.level = share >= 0.9 ? "high" : share >= 0.7 ? "mid" : "low";
    $("people-hint").textContent =
      `${Math.round(share * 100)}% of capacity` + (few ? ` · ${few} zone${few > 1 ? "s" : ""} with a few people` : "");
  }

  function renderSeats() {
    let free = 0;
    let total = 0;
    for (const z of app.zones.values()) {
      free += z.seats_free;
      total += z.seats_total;
    }
    let unknown = 0;
    for (const s of app.seats.values()) if (s.state === "unknown") unknown += 1;
    $("seats-free").textContent = fmt(free);
    $("seats-total").textContent = fmt(total);
    $("seats-hint").textContent = unknown ? `${unknown} seat sensor${unknown > 1 ? "s" : ""} not reporting` : "Every seat sensor reporting";
  }

  function renderAlerts() {
    const counts = { critical: 0, warning: 0, info: 0 };
    for (const a of app.alerts.values()) counts[a.severity] = (counts[a.severity] || 0) + 1;
    $("alerts-open").textContent = fmt(app.alerts.size);
    for (const k of Object.keys(counts)) $(`alerts-${k}`).textContent = fmt(counts[k]);
    $("tile-alerts").dataset.level = counts.critical ? "high" : counts.warning ? "mid" : "low";
  }

  function renderShelves() {
    $("misplaced").textContent = fmt(app.shelves.misplaced);
    $("missing").textContent = fmt(app.shelves.missing);
  }

  function onZones(name, body) {
    if (name === "snapshot") {
      app.zones = new Map(body.zones.map((z) => [z.id, z]));
      app.seats = new Map(body.seats.map((s) => [s.id, s]));
    } else if (name === "zone") {
      app.zones.set(body.id, body);
      $("announce").textContent = `${body.name} updated`;
    } else if (name === "seat") {
      app.seats.set(body.id, body);
    } else {
      return;
    }
    renderPeople();
    renderSeats();
    renderFloors();
  }

  function onAlerts(name, body) {
    if (name === "snapshot") {
      app.alerts = new Map(body.alerts.map((a) => [a.id, a]));
    } else if (name === "transition") {
      const a = body.alert;
      if (a.active) app.alerts.set(a.id, a);
      else app.alerts.delete(a.id);
    } else {
      return;
    }
    renderAlerts();
  }

  function onInventory(name, body) {
    if (name === "snapshot") {
      app.shelves.misplaced = body.misplaced.length;
      app.shelves.missing = body.missing.length;
    } else if (name === "misplaced" || name === "missing") {
      app.shelves[name] = body.length;
    } else {
      return;
    }
    renderShelves();
  }

  // ---- polled panels -----------------------------------------------------------------

  function localMinutes(iso) {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: app.site.timezone,
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    }).formatToParts(new Date(iso));
    const get = (t) => Number(parts.find((p) => p.type === t).value);
    return get("hour") * 60 + get("minute");
  }

  function floorNow(floor) {
    let n = 0;
    for (const z of app.zones.values()) if (z.floor === floor && z.occupancy !== null) n += z.occupancy;
    return n;
  }

  // The newest zone update: the system's own clock, which may run simulated time.
  function systemNow() {
    let newest = "";
    for (const z of app.zones.values()) if (z.updated_at > newest) newest = z.updated_at;
    return newest || new Date().toISOString();
  }

  function renderFloors() {
    const box = $("floors");
    if (page !== "live" || !box) return;
    box.replaceChildren();
    $("floors-empty").hidden = app.floors.some((f) => f.points.length);
    const W = 600;
    const H = 150;
    const x = (m) => (m / 1440) * W;
    for (const f of app.floors) {
      const top = Math.max(f.capacity, ...f.points.map((p) => Math.max(p.occupancy || 0, p.typical || 0)), 1);
      const y = (v) => H - (v / top) * (H - 10);
      const chart = svg("svg", { viewBox: `0 0 ${W} ${H + 18}`, role: "img", class: "chart" });
      chart.setAttribute("aria-label", `Floor ${f.floor}: occupancy today and on a typical day`);
      for (const h of [0, 6, 12, 18, 24]) {
        chart.append(svg("line", { x1: x(h * 60), x2: x(h * 60), y1: 0, y2: H, class: "grid" }));
        const anchor = h === 0 ? "start" : h === 24 ? "end" : "middle";
        const label = svg("text", { x: x(h * 60), y: H + 15, class: "axis", "text-anchor": anchor });
        label.textContent = `${String(h).padStart(2, "0")}:00`;
        chart.append(label);
      }
      chart.append(svg("line", { x1: 0, x2: W, y1: y(f.capacity), y2: y(f.capacity), class: "capacity" }));
      const cap = svg("text", { x: 4, y: y(f.capacity) + 14, class: "axis" });
      cap.textContent = `capacity ${f.capacity}`;
      chart.append(cap);
      for (const [key, cls] of [["typical", "typical"], ["occupancy", "today"]]) {
        const pts = f.points.filter((p) => p[key] !== null).map((p) => `${x(localMinutes(p.at)).toFixed(1)},${y(p[key]).toFixed(1)}`);
        if (pts.length) chart.append(svg("polyline", { points: pts.join(" "), class: cls }));
      }
      const now = floorNow(f.floor);
      chart.append(svg("circle", { cx: x(localMinutes(systemNow())), cy: y(now), r: 5, class: "now" }));
      box.append(
        el(
          "figure",
          { class: "floor", "data-floor": String(f.floor) },
          el("figcaption", {}, `Floor ${f.floor}`, el("span", { class: "hint" }, ` · now ${fmt(now)} of ${fmt(f.capacity)}`)),
          chart,
        ),
      );
    }
  }

  async function poll(path, apply) {
    try {
      const answer = await authFetch(`/api/v1/sites/${encodeURIComponent(app.site.id)}/${path}`);
      if (answer && answer.ok) apply(await answer.json());
    } catch (_err) {
      // the next poll tries again; the tiles stay live on their streams
    }
  }

  function loadFloors() {
    return poll("reports/floors", (floors) => {
      app.floors = floors;
      renderFloors();
    });
  }

  function loadDevices() {
    return poll("reports/devices", (kinds) => {
      let offline = 0;
      const items = kinds.map((k) => {
        offline += k.offline;
        const bits = [`${k.online} online`];
        if (k.offline) bits.push(`${k.offline} offline`);
        if (k.unheard) bits.push(`${k.unheard} never heard`);
        return el("li", { "data-kind": k.kind }, el("strong", {}, k.kind), ` ${bits.join(", ")} of ${k.total}`);
      });
      $("devices").replaceChildren(...items);
      $("devices-offline").textContent = fmt(offline);
      $("tile-devices").dataset.level = offline ? "mid" : "low";
    });
  }

  function loadDemand() {
    return poll("demand?limit=10", (rows) => {
      $("demand").replaceChildren(
        ...rows.map((r) =>
          el(
            "li",
            { "data-title": r.title },
            el("span", { class: "title" }, r.title),
            el("span", { class: "meta" }, ` ${r.call_number} · score ${Number(r.score).toFixed(1)} · ${r.copies} cop${r.copies === 1 ? "y" : "ies"}`),
            r.suggest_purchase ? el("span", { class: "buy" }, ` Buy: ${r.reason || "suggested"}`) : null,
          ),
        ),
      );
      $("demand-empty").hidden = rows.length > 0;
    });
  }

  function startLive() {
    const site = encodeURIComponent(app.site.id);
    follow("zones", `/api/v1/sites/${site}/stream`, onZones);
    follow("alerts", `/api/v1/sites/${site}/alerts/stream`, onAlerts);
    follow("inventory", `/api/v1/sites/${site}/inventory/stream`, onInventory);
    loadFloors();
    loadDevices();
    loadDemand();
    app.timers.push(setInterval(loadFloors, POLL_MS.floors));
    app.timers.push(setInterval(loadDevices, POLL_MS.devices));
    app.timers.push(setInterval(loadDemand, POLL_MS.demand));
    app.timers.push(setInterval(renderFloors, 60000)); // the "now" dot moves on
  }

  // ---- the report page ---------------------------------------------------------------

  function reportUrl(kind) {
    // No day chosen yet: the server's today (its clock may be a simulated one).
    const day = $("day").value;
    const site = encodeURIComponent(app.site.id);
    const params = new URLSearchParams(day ? { date: day } : {});
    if (kind === "html") params.set("fragment", "true");
    return `/api/v1/sites/${site}/reports/daily.${kind}?${params}`;
  }

  async function loadReport() {
    setConnection("connecting", "Loading…");
    let answer;
    try {
      answer = await authFetch(reportUrl("html"));
    } catch (_err) {
      setConnection("offline", "The server cannot be reached.");
      return;
    }
    if (answer === null) return;
    if (!answer.ok) {
      setConnection("offline", `The report could not be made (${answer.status}).`);
      return;
    }
    // The server escapes every value it puts in the fragment.
    $("board").innerHTML = await answer.text();
    $("day").value = $("report").dataset.date;
    history.replaceState(null, "", `?date=${$("day").value}`);
    document.title = `Daily summary ${$("day").value} · ${app.site.name}`;
    setConnection("live", "Ready");
  }

  async function downloadCsv() {
    const answer = await authFetch(reportUrl("csv"));
    if (!answer || !answer.ok) return;
    const link = el("a", {
      href: URL.createObjectURL(await answer.blob()),
      download: `stackpulse-${app.site.id}-${$("day").value}.csv`,
    });
    document.body.append(link);
    link.click();
    link.remove();
  }

  function startReport() {
    const wanted = new URLSearchParams(location.search).get("date");
    $("day").value = /^\d{4}-\d{2}-\d{2}$/.test(wanted || "") ? wanted : "";
    loadReport();
  }

  // ---- start -------------------------------------------------------------------------

  function start() {
    if (!SP.token()) {
      session.showLogin("");
      return;
    }
    stopAll();
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    if (page === "live") startLive();
    else startReport();
  }

  async function boot() {
    const offline = () => {
      setConnection("offline", "Offline — retrying");
      setTimeout(boot, 3000);
    };
    if (!(await SP.loadSites(app, /^\/manager\/([a-z0-9-]{1,32})(\/report)?\/?$/, offline))) return;
    const site = encodeURIComponent(app.site.id);
    session.listen();
    if (page === "live") {
      document.title = `Manager view · ${app.site.name}`;
      $("report-link").href = `/manager/${site}/report`;
      $("report-link").hidden = false;
      SP.siteHeader(app.sites, app.site, "/manager/");
    } else {
      $("back").href = `/manager/${site}`;
      $("day").addEventListener("change", loadReport);
      $("download").addEventListener("click", downloadCsv);
      $("print").addEventListener("click", () => window.print());
    }
    start();
  }

  boot();
})();
