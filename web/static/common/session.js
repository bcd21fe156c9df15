// Shared by the staff and manager pages: DOM helpers, the sign-in form and its bearer token
// (sessionStorage, one sign-in per tab), fetches with the token, and a Server-Sent Events
// reader over fetch (EventSource cannot send an Authorization header).
// A classic script: it sets `window.StackPulse`; each page's app.js loads after it.
"use strict";

window.StackPulse = (() => {
  const TOKEN_KEY = "stackpulse.token";
  const MAX_RETRY_MS = 30000;
  const $ = (id) => document.getElementById(id);

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function authHeaders() {
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

  // A timestamp in the site's time zone (`site` may be null: the browser's zone).
  function when(ts, site) {
    if (!ts) return "never";
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return ts;
    const tz = site && site.timezone;
    try {
      return d.toLocaleString([], { dateStyle: "medium", timeStyle: "short", timeZone: tz });
    } catch (_err) {
      return d.toLocaleString();
    }
  }

  function floorName(floor) {
    return floor === null || floor === undefined ? "No floor" : `Floor ${floor}`;
  }

  // The reshelving tasks, a list per floor, into #task-floors; returns how many there are.
  // `floorAttr` also marks each floor's section with data-floor.
  function renderTaskFloors(floors, site, { floorAttr = false } = {}) {
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
              `Move ${t.item} (${t.call_number}, ${t.title}) from `,
              el("span", { class: "section" }, t.from_section),
              " to ",
              el("span", { class: "section" }, t.to_section),
            ),
            el("p", { class: "meta" }, `Open since ${when(t.opened_at, site)}`),
          ),
        );
      }
      const attrs = { class: "floor" };
      if (floorAttr) attrs["data-floor"] = f.floor === null ? "none" : String(f.floor);
      box.append(el("section", attrs, el("h3", {}, floorName(f.floor)), list));
    }
    return n;
  }

  // The site named by the page's path (`pattern` captures its id), else the first one.
  function pickSite(sites, pattern) {
    const match = location.pathname.match(pattern);
    const wanted = match ? match[1] : null;
    return sites.find((s) => s.id === wanted) || sites[0] || null;
  }

  // Loads the sites into `app.sites` and picks this page's into `app.site` (`pattern`
  // captures its id from the path). False when there is none yet: `offline()` is called
  // when the server cannot be reached (to try again), the header says so when none exist.
  async function loadSites(app, pattern, offline) {
    try {
      app.sites = await (await fetch("/api/v1/sites")).json();
    } catch (_err) {
      offline();
      return false;
    }
    app.site = pickSite(app.sites, pattern);
    if (!app.site) {
      setConnection("offline", "No sites configured");
      return false;
    }
    return true;
  }

  // Names the building in the header and fills its picker; choosing another building
  // opens `${base}${id}`.
  function siteHeader(sites, site, base) {
    $("site-name").textContent = site.name;
    const select = $("site-select");
    select.replaceChildren(...sites.map((s) => el("option", { value: s.id }, s.name)));
    select.value = site.id;
    $("site-picker").hidden = sites.length < 2;
    select.addEventListener("change", () => location.assign(`${base}${encodeURIComponent(select.value)}`));
  }

  // The sign-in form and the token. `stop` ends what runs while signed in, `start` begins
  // it, `forbidden()` says why a 403 sent the user back to the form.
  function session({ stop, start, forbidden }) {
    function showLogin(message) {
      stop();
      $("board").hidden = true;
      $("logout").hidden = true;
      $("login").hidden = false;
      $("login-error").hidden = !message;
      $("login-error").textContent = message || "";
      setConnection("signed-out", "Signed out");
      $("username").focus();
    }

    function expired() {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Your sign-in has expired. Please sign in again.");
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
      sessionStorage.setItem(TOKEN_KEY, (await answer.json()).access_token);
      $("password").value = "";
      start();
    }

    function logout() {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("");
    }

    // A fetch with the token, not cached; on 401/403 it shows the sign-in form and
    // returns null.
    async function authFetch(url, options) {
      const headers = Object.assign(authHeaders(), (options || {}).headers);
      const answer = await fetch(url, Object.assign({ cache: "no-store" }, options, { headers }));
      if (answer.status === 401) {
        expired();
        return null;
      }
      if (answer.status === 403) {
        showLogin(forbidden());
        return null;
      }
      return answer;
    }

    function listen() {
      $("login").addEventListener("submit", login);
      $("logout").addEventListener("click", logout);
    }

    function forget() {
      sessionStorage.removeItem(TOKEN_KEY);
    }

    return { showLogin, expired, authFetch, listen, forget };
  }

  // Reads a text/event-stream body, calling onEvent(name, data) for each event with data;
  // returns when the stream ends, is aborted or drops.
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
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
            if (data.length) onEvent(event, data.join("\n"));
            event = "message";
            data = [];
          } else if (!line.startsWith(":")) {
            // (a line starting with ":" is a keep-alive comment)
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data.push(val);
          }
        }
      }
    } catch (_err) {
      // aborted or the connection dropped: the caller decides
    }
  }

  // One followed stream for a staff page: connects with the token, says its state in the
  // header, and reconnects with a doubling backoff. `url()` is read at each connect;
  // `onEvent(name, body)` gets each event's JSON (events that are not JSON are dropped);
  // the page calls `live()` when the snapshot arrives.
  function stream({ session: who, url, onEvent }) {
    let controller = null;
    let retryMs = 1000;
    let retryTimer = null;

    function stop() {
      clearTimeout(retryTimer);
      if (controller) controller.abort();
      controller = null;
    }

    // Shows `text` and calls `again` after the backoff (boot uses it before any stream).
    function retryLater(text, again) {
      setConnection("offline", text);
      retryTimer = setTimeout(again || connect, retryMs);
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    }

    function live() {
      setConnection("live", "Live");
      retryMs = 1000;
    }

    async function connect() {
      stop();
      const mine = new AbortController();
      controller = mine;
      setConnection("connecting", "Connecting…");
      let answer;
      try {
        answer = await who.authFetch(url(), {
          headers: { Accept: "text/event-stream" },
          signal: mine.signal,
        });
      } catch (_err) {
        if (!mine.signal.aborted) retryLater("Offline — retrying");
        return;
      }
      if (answer === null) return;
      if (!answer.ok || !answer.body) {
        retryLater(`Server error ${answer.status} — retrying`);
        return;
      }
      await readEvents(answer.body, (name, data) => {
        let body;
        try {
          body = JSON.parse(data);
        } catch (_err) {
          return;
        }
        onEvent(name, body);
      });
      if (!mine.signal.aborted) retryLater("Reconnecting…");
    }

    return { connect, stop, live, retryLater };
  }

  // A staff page: its sign-in and its one stream, `/api/v1/sites/{site}/{path}` of `app.site`.
  // `stop` ends what else runs while signed in.
  function staffPage(app, { path, start, stop, onEvent }) {
    const who = session({
      stop: () => {
        feed.stop();
        if (stop) stop();
      },
      start,
      forbidden: () => `This account is not staff of ${app.site.name}.`,
    });
    const feed = stream({
      session: who,
      url: () => `/api/v1/sites/${encodeURIComponent(app.site.id)}/${path}`,
      onEvent,
    });
    return { session: who, feed };
  }

  return {
    MAX_RETRY_MS,
    $,
    token,
    authHeaders,
    setConnection,
    el,
    when,
    renderTaskFloors,
    loadSites,
    siteHeader,
    session,
    readEvents,
    stream,
    staffPage,
  };
})();
