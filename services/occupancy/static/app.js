// Student page: free seats per zone, kept live over Server-Sent Events.
"use strict";

(() => {
  const STATE_LABEL = { free: "free", occupied: "occupied", held: "held", unknown: "unknown" };
  const STATE_ORDER = ["free", "occupied", "held", "unknown"];
  const BUSY_LABEL = {
    quiet: "Quiet", moderate: "Moderate", busy: "Busy", "very busy": "Very busy", full: "Full",
  };
  const FEATURES = ["power", "window", "quiet"]; // the seat filters a student can tick
  const ANNOUNCE_EVERY_MS = 30000; // screen readers should not narrate every sensor blip
  const MAX_RETRY_MS = 30000;

  const app = {
    site: null,
    zones: new Map(),
    seats: new Map(),
    openZone: null,
    lastUpdate: null,
    source: null,
    retryMs: 1000,
    retryTimer: null,
    frame: 0,
    lastAnnounce: 0,
    filters: new Set(),
    usual: new Map(), // zone -> [{at, occupancy, busyness}] of this hour and the next
    timeFmt: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" }),
    hourFmt: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) if (child !== null) node.append(child);
    return node;
  }

  // ---- site choice -------------------------------------------------------------------

  async function chooseSite() {
    const response = await fetch("/api/v1/sites", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`sites: HTTP ${response.status}`);
    const sites = await response.json();
    const fromPath = location.pathname.match(/^\/sites\/([a-z0-9-]{1,32})\/?$/);
    const wanted = fromPath ? fromPath[1] : new URLSearchParams(location.search).get("site");
    const site = sites.find((s) => s.id === wanted) || sites[0];
    if (!site) throw new Error("this deployment serves no site");
    if (sites.length > 1) {
      const select = $("site-select");
      for (const s of sites) select.append(el("option", { value: s.id, text: s.name, selected: s.id === site.id }));
      select.addEventListener("change", () => { location.href = `/sites/${encodeURIComponent(select.value)}`; });
      $("site-picker").hidden = false;
    }
    try {
      app.timeFmt = new Intl.DateTimeFormat(undefined, {
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: site.timezone,
      });
      app.hourFmt = new Intl.DateTimeFormat(undefined, {
        hour: "2-digit", minute: "2-digit", timeZone: site.timezone,
      });
    } catch (_) { /* an unknown time zone: keep the browser's own */ }
    $("site-name").textContent = site.name;
    document.title = `Free seats · ${site.name}`;
    return site;
  }

  // ---- live stream -------------------------------------------------------------------

  function setConnection(state, text) {
    const conn = $("conn");
    if (conn.dataset.state === state) return;
    conn.dataset.state = state;
    $("conn-text").textContent = text;
  }

  function connect() {
    clearTimeout(app.retryTimer);
    if (app.source) app.source.close();
    const source = new EventSource(`/api/v1/sites/${encodeURIComponent(app.site.id)}/stream`);
    app.source = source;
    source.addEventListener("snapshot", (e) => {
      const snap = JSON.parse(e.data);
      app.zones = new Map(snap.zones.map((z) => [z.id, z]));
      app.seats = new Map(snap.seats.map((s) => [s.id, s]));
      app.lastUpdate = latest(snap.zones);
      app.retryMs = 1000;
      setConnection("live", "Live");
      schedule();
    });
    source.addEventListener("zone", (e) => {
      const zone = JSON.parse(e.data);
      app.zones.set(zone.id, zone);
      if (!app.lastUpdate || zone.updated_at > app.lastUpdate) app.lastUpdate = zone.updated_at;
      markChanged(zone.id);
      schedule();
    });
    source.addEventListener("seat", (e) => {
      const seat = JSON.parse(e.data);
      app.seats.set(seat.id, seat);
      schedule();
    });
    source.addEventListener("reset", () => setConnection("reconnecting", "Reconnecting…"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): try again ourselves, backing off.
        setConnection("offline", "Offline — retrying");
        app.retryTimer = setTimeout(connect, app.retryMs);
        app.retryMs = Math.min(app.retryMs * 2, MAX_RETRY_MS);
      } else {
        setConnection("reconnecting", "Reconnecting…");
      }
    });
  }

  function latest(zones) {
    return zones.reduce((max, z) => (!max || z.updated_at > max ? z.updated_at : max), null);
  }

  // Many events can arrive at once (a snapshot, a burst of sensors): draw once per frame.
  function schedule() {
    if (app.frame) return;
    app.frame = requestAnimationFrame(() => {
      app.frame = 0;
      renderSummary();
      renderZones();
      if (app.openZone) renderSheet();
    });
  }

  // ---- "usually busy at this hour" -------------------------------------------------

  const FORECAST_EVERY_MS = 5 * 60 * 1000;

  async function loadForecast() {
    try {
      const response = await fetch(`/api/v1/sites/${encodeURIComponent(app.site.id)}/forecast`,
        { headers: { Accept: "application/json" } });
      if (response.ok) {
        app.usual = new Map((await response.json()).map((f) => [f.id, f.hours]));
        schedule();
      }
    } catch (_) { /* keep the last one; the live view does not depend on it */ }
    setTimeout(loadForecast, FORECAST_EVERY_MS);
  }

  function usualText(zoneId) {
    const hours = (app.usual.get(zoneId) || []).filter((h) => h.busyness);
    if (!hours.length) return null;
    const now = hours[0];
    const later = hours.find((h) => h.busyness !== now.busyness);
    const label = (b) => (BUSY_LABEL[b] || b).toLowerCase();
    let text = `Usually ${label(now.busyness)} at this hour`;
    if (later) text += ` · ${label(later.busyness)} from ${app.hourFmt.format(new Date(later.at))}`;
    return text;
  }

  // ---- seat filters ------------------------------------------------------------------

  function loadFilters() {
    let saved = [];
    try { saved = JSON.parse(localStorage.getItem("seat-filters") || "[]"); } catch (_) { /* none */ }
    app.filters = new Set(FEATURES.filter((f) => saved.includes(f)));
    for (const box of document.querySelectorAll("#filters input[type=checkbox]")) {
      box.checked = app.filters.has(box.value);
      box.addEventListener("change", () => {
        if (box.checked) app.filters.add(box.value); else app.filters.delete(box.value);
        try { localStorage.setItem("seat-filters", JSON.stringify([...app.filters])); } catch (_) { /* private mode */ }
        schedule();
      });
    }
  }

  function matches(seat) {
    for (const f of app.filters) if (!(seat.features || []).includes(f)) return false;
    return true;
  }

  // Free seats of a zone as the student wants them: the zone's own count without
  // filters, else counted from the seats that have every ticked feature.
  function freeFor(z) {
    if (!app.filters.size) return { free: z.seats_free, total: z.seats_total };
    let free = 0, total = 0;
    for (const seat of app.seats.values()) {
      if (seat.zone !== z.id || !matches(seat)) continue;
      total += 1;
      if (seat.state === "free") free += 1;
    }
    return { free, total };
  }

  function filterText() {
    return app.filters.size ? ` with ${[...app.filters].join(" + ")}` : "";
  }

  // ---- zones -------------------------------------------------------------------------

  const changed = new Set();
  function markChanged(id) { changed.add(id); }

  function zoneRank(z) {
    const { free, total } = freeFor(z);
    if (free > 0) return 0;
    return total === 0 ? 1 : 2; // no (matching) seat sensors, then full
  }

  function sortedZones() {
    return [...app.zones.values()].sort((a, b) =>
      zoneRank(a) - zoneRank(b) || a.floor - b.floor || a.name.localeCompare(b.name));
  }

  function renderSummary() {
    const zones = [...app.zones.values()];
    const free = zones.reduce((n, z) => n + freeFor(z).free, 0);
    $("free-total").textContent = String(free);
    $("free-label").textContent = (free === 1 ? "seat free" : "seats free") + filterText();
    const open = zones.filter((z) => freeFor(z).free > 0).length;
    $("zone-count").textContent = zones.length
      ? `in ${open} of ${zones.length} zone${zones.length === 1 ? "" : "s"}` : "Waiting for data";
    const updated = $("updated");
    if (app.lastUpdate) {
      updated.dateTime = app.lastUpdate;
      updated.textContent = app.timeFmt.format(new Date(app.lastUpdate));
    }
    $("empty").hidden = zones.length > 0;
    const now = Date.now();
    if (zones.length && now - app.lastAnnounce > ANNOUNCE_EVERY_MS) {
      app.lastAnnounce = now;
      $("announce").textContent = `${free} ${free === 1 ? "seat" : "seats"} free in ${app.site.name}.`;
    }
  }

  function renderZones() {
    const list = $("zones");
    const existing = new Map([...list.children].map((li) => [li.dataset.zoneId, li]));
    const zones = sortedZones();
    zones.forEach((zone, index) => {
      let li = existing.get(zone.id);
      if (!li) {
        li = el("li", { "data-zone-id": zone.id });
        li.append(el("button", { type: "button", class: "zone", "aria-haspopup": "dialog" }));
        li.firstChild.addEventListener("click", () => openSheet(zone.id));
      }
      fillZone(li.firstChild, zone);
      // Moving a node blurs it, so move only what is out of place.
      if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
      if (changed.has(zone.id)) flash(li.firstChild);
      existing.delete(zone.id);
    });
    for (const stale of existing.values()) stale.remove();
    changed.clear();
  }

  function fillZone(button, z) {
    // Below the privacy floor the service withholds the count (occupancy null, band "few").
    const few = z.occupancy === null || z.occupancy === undefined;
    const pct = !few && z.capacity > 0 ? Math.round((100 * z.occupancy) / z.capacity) : 0;
    const { free, total } = freeFor(z);
    const full = total > 0 && free === 0;
    const usual = usualText(z.id);
    button.dataset.busyness = z.busyness.replace(" ", "-");
    button.classList.toggle("is-full", full);
    const fullText = few ? "a few people" : `${pct}% full`;
    const none = app.filters.size ? `no seats${filterText()}` : "no seat sensors";
    const seatsText = total === 0 ? none : `${free} free of ${total}${filterText()}`;
    button.setAttribute("aria-label",
      `${z.name}, floor ${z.floor}: ${seatsText}; ${BUSY_LABEL[z.busyness] || z.busyness}, ${fullText}${usual ? `. ${usual}` : ""}`);
    button.replaceChildren(
      el("span", { class: "zone-main" },
        el("span", { class: "zone-name", text: z.name }),
        el("span", { class: "zone-floor", text: `Floor ${z.floor}` })),
      total === 0
        ? el("span", { class: "zone-free none" }, el("span", { class: "free-of", text: app.filters.size ? "No such seats" : "No seat sensors" }))
        : el("span", { class: "zone-free" },
          el("span", { class: "free-n", "data-testid": "free", text: String(free) }),
          el("span", { class: "free-of", text: `free of ${total}` })),
      el("span", { class: "zone-busy" },
        el("span", { class: "bar", "aria-hidden": "true" },
          el("span", { class: "bar-fill", style: `width:${Math.min(100, pct)}%` })),
        el("span", { class: "busy-label", text: `${BUSY_LABEL[z.busyness] || z.busyness} · ${few ? "A few people" : `${pct}% full`}` })),
      ...(usual ? [el("span", { class: "zone-usual", "data-testid": "usual", text: usual })] : []),
    );
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation
    node.classList.add("flash");
  }

  // ---- one zone's seats --------------------------------------------------------------

  function openSheet(zoneId) {
    app.openZone = zoneId;
    const sheet = $("sheet");
    if (!sheet.open) sheet.showModal(); // first, so that the map can measure its width
    renderSheet();
  }

  function closeSheet() {
    const id = app.openZone;
    app.openZone = null;
    $("sheet").close();
    const button = document.querySelector(`li[data-zone-id="${CSS.escape(id || "")}"] button`);
    if (button) button.focus();
  }

  function zoneSeats(zoneId) {
    return [...app.seats.values()].filter((s) => s.zone === zoneId)
      .sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
  }

  function renderSheet() {
    const zone = app.zones.get(app.openZone);
    const seats = zoneSeats(app.openZone);
    $("sheet").dataset.zoneId = app.openZone;
    $("sheet-title").textContent = zone ? zone.name : app.openZone;
    $("sheet-sub").textContent = zone
      ? `Floor ${zone.floor} · ${BUSY_LABEL[zone.busyness] || zone.busyness} · ${zone.seats_free} free of ${zone.seats_total}`
      : "";
    const counts = Object.fromEntries(STATE_ORDER.map((s) => [s, 0]));
    for (const seat of seats) counts[seat.state] = (counts[seat.state] || 0) + 1;
    $("legend").replaceChildren(...STATE_ORDER.map((s) =>
      el("li", { class: "chip", "data-state": s },
        el("span", { class: "swatch", "aria-hidden": "true" }),
        `${counts[s]} ${STATE_LABEL[s]}`)));
    renderMap(seats);
    const free = seats.filter((s) => s.state === "free" && matches(s));
    $("free-title").textContent = `Free now${filterText()}`;
    $("free-list").replaceChildren(...(free.length ? free.map((s) =>
      el("li", {}, el("strong", { text: shortId(s.id) }),
        s.features && s.features.length ? ` · ${s.features.join(", ")}` : "")) : [el("li", { class: "none", text: `No free seats${filterText()} here right now.` })]));
  }

  function shortId(id) {
    const tail = id.split("-").pop();
    return tail && tail.length <= 5 ? tail : id;
  }

  function seatNode(seat) {
    const hog = seat.state === "held" && seat.held_too_long;
    const label = hog ? "held long" : STATE_LABEL[seat.state] || "unknown";
    const features = seat.features && seat.features.length ? `, ${seat.features.join(", ")}` : "";
    return el("li", {
      class: hog ? "seat is-hog" : "seat", "data-seat-id": seat.id, "data-state": seat.state,
      "data-match": app.filters.size ? String(matches(seat)) : null,
      "aria-label": `Seat ${seat.id}: ${label}${features}`, title: `${seat.id}: ${label}${features}`,
    }, el("span", { class: "seat-id", text: shortId(seat.id), "aria-hidden": "true" }),
    el("span", { class: "seat-state", text: label, "aria-hidden": "true" }));
  }

  // Seats go where the layout puts them when it gives coordinates and they fit apart on this
  // screen; otherwise a tidy grid, which never overlaps.
  function renderMap(seats) {
    const map = $("seat-map");
    const placed = seats.filter((s) => typeof s.x === "number" && typeof s.y === "number");
    const list = el("ul", { class: "seats", "aria-label": "Seats" }, ...seats.map(seatNode));
    map.replaceChildren(list);
    if (!seats.length) {
      map.replaceChildren(el("p", { class: "none", text: "This zone has no seat sensors." }));
      return;
    }
    const layout = placed.length === seats.length ? placement(placed, map.clientWidth || 320) : null;
    map.classList.toggle("is-map", Boolean(layout));
    if (!layout) return;
    list.style.height = `${layout.height}px`;
    for (const node of list.children) {
      const at = layout.at.get(node.dataset.seatId);
      node.style.left = `${at.left}px`;
      node.style.top = `${at.top}px`;
    }
  }

  function placement(seats, width) {
    const TILE_W = 64, TILE_H = 44, GAP = 4;
    const xs = seats.map((s) => s.x), ys = seats.map((s) => s.y);
    const minX = Math.min(...xs), minY = Math.min(...ys);
    const spanX = Math.max(...xs) - minX, spanY = Math.max(...ys) - minY;
    const scale = spanX > 0 ? (width - TILE_W) / spanX : 1;
    if (scale <= 0) return null;
    const at = new Map(seats.map((s) => [s.id, { left: (s.x - minX) * scale, top: (s.y - minY) * scale }]));
    const boxes = [...at.values()];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        if (Math.abs(boxes[i].left - boxes[j].left) < TILE_W + GAP
          && Math.abs(boxes[i].top - boxes[j].top) < TILE_H + GAP) return null;
      }
    }
    return { at, height: spanY * scale + TILE_H };
  }

  // ---- start -------------------------------------------------------------------------

  async function boot() {
    try {
      app.site = await chooseSite();
    } catch (err) {
      setConnection("offline", "Offline — retrying");
      $("empty").textContent = "Cannot reach the library's server. Retrying…";
      setTimeout(boot, app.retryMs);
      app.retryMs = Math.min(app.retryMs * 2, MAX_RETRY_MS);
      return;
    }
    $("empty").textContent = "Waiting for the first readings from the building…";
    connect();
    loadForecast();
  }

  function start() {
    loadFilters();
    $("sheet-close").addEventListener("click", closeSheet);
    $("sheet").addEventListener("cancel", (e) => { e.preventDefault(); closeSheet(); });
    // A tap on the backdrop (the dialog element itself, outside its content) closes it.
    $("sheet").addEventListener("click", (e) => { if (e.target === $("sheet")) closeSheet(); });
    window.addEventListener("resize", schedule);
    boot();
  }

  document.addEventListener("DOMContentLoaded", start, { once: true });
})();
