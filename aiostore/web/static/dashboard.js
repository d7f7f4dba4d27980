/* aiostore dashboard: shows one page of stores from ./stores (degraded first, filtered by name
   and state), keeps it live with the "capability" Server-Sent Events of ./events, and reloads the
   page (health details, order, counts) shortly after changes. Only the page's stores are in the
   DOM, however many stores the service has. No framework, no build step, nothing from a CDN.

   Grid cells carry stable hooks for tests and scripts:
     id="cap-<store>-<layer>-<CAPABILITY>" data-store data-layer data-cap data-held="true|false"
   The 13 columns (names and bits) come from the snapshot event ("capabilities"), which lists
   aiostore.capabilities.flags.NAMED in order. */
"use strict";
(function () {
  const LAYERS = ["native", "configured", "current"];
  const REFRESH_MS = 5000;
  // Reload the page this soon after a change, but never more often than MIN_GAP_MS: a storm of
  // changes costs one small request per second, whatever its size.
  const AFTER_CHANGE_MS = 200;
  const MIN_GAP_MS = 1000;
  const MAX_TIMELINE = 200;
  const SYMBOL = { held: "\u2713", revoked: "\u2717", "config-off": "\u2013", absent: "\u00b7" };

  // The bearer token, when the service asks for one (aiostore serve --token-file): asked once,
  // kept in sessionStorage for this tab only (gone when the tab closes, never in a URL).
  const TOKEN_KEY = "aiostore-token";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let streaming = false;

  let caps = []; // [{name, value}]
  const stores = new Map(); // name -> latest snapshot of a store on the page (the /stores shape)
  let connected = false;
  let snapshots = 0;
  // What the page shows: ./stores?sort=degraded&q=&state=&limit=&offset=
  const view = { q: "", state: "", limit: 24, offset: 0 };
  let loading = false; // a page request is running
  let again = false; // ... and another one is wanted after it
  let loadTimer = null;
  let loadAt = 0; // when loadTimer fires
  let lastLoad = 0;
  let pageSeq = 0; // answers of requests overtaken by a newer one are dropped

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  const holds = (value, cap) => (value & cap.value) === cap.value;
  const cellId = (store, layer, cap) => `cap-${store}-${layer}-${cap}`;

  function fmtTime(unix) {
    return new Date(unix * 1000).toLocaleTimeString([], { hour12: false });
  }

  function ago(unix) {
    if (unix == null) return "never";
    const s = Math.max(0, Date.now() / 1000 - unix);
    if (s < 1) return "just now";
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    return fmtTime(unix);
  }

  // -- store cards ------------------------------------------------------------------------
  const cards = new Map(); // name -> the card of a store on the page
  function card(name) {
    const existing = cards.get(name);
    if (existing) return existing;
    const probe = h("button", { class: "probe-now", type: "button", text: "probe now" });
    probe.addEventListener("click", () => probeNow(name, probe));
    // An operator's override: take the store out of writes (with a reason) and back.
    const reason = h("input", {
      class: "unset-reason", type: "text", maxlength: "500", "aria-label": "reason",
      placeholder: "reason, e.g. maintenance",
    });
    const writes = h("button", { class: "writes-toggle", type: "button", text: "unset WRITE_ACCESS" });
    writes.addEventListener("click", () => toggleWrites(name, writes, reason));
    const head = h(
      "div",
      { class: "store-head" },
      h("h2", { text: name }),
      h("span", { class: "driver" }),
      h("code", { class: "location" }),
      h("span", { class: "badge" }),
      probe,
      h("span", { class: "override-controls" }, reason, writes)
    );
    const headRow = h("tr", {}, h("th", { text: "" }));
    for (const c of caps) headRow.append(h("th", { scope: "col", title: `${c.name} = ${c.value}`, text: c.name }));
    const body = h("tbody");
    for (const layer of LAYERS) {
      const row = h("tr", { "data-layer": layer }, h("th", { scope: "row", text: layer }));
      for (const c of caps) {
        row.append(
          h("td", {
            id: cellId(name, layer, c.name),
            class: "cell absent",
            "data-store": name,
            "data-layer": layer,
            "data-cap": c.name,
            "data-held": "false",
          })
        );
      }
      body.append(row);
    }
    const node = h(
      "article",
      { class: "store", id: "store-" + name, "data-store": name },
      head,
      h("div", { class: "grid-wrap" }, h("table", { class: "grid" }, h("thead", {}, headRow), body)),
      h("div", { class: "health" }),
      h("p", { class: "override", hidden: "" }),
      h("ul", { class: "reasons" })
    );
    cards.set(name, node);
    return node;
  }

  function setCell(store, layer, cap, cls, title) {
    const td = document.getElementById(cellId(store, layer, cap.name));
    if (!td) return;
    const held = String(cls === "held");
    const changed = td.dataset.painted === "1" && td.dataset.held !== held;
    td.dataset.held = held;
    td.dataset.painted = "1";
    td.className = "cell " + cls;
    td.textContent = SYMBOL[cls];
    td.title = title;
    if (changed) {
      td.classList.remove("flash");
      void td.offsetWidth; // restart the animation
      td.classList.add("flash");
    }
  }

  function revokedReasons(snap) {
    const out = [];
    for (const [name, c] of Object.entries((snap.health && snap.health.capabilities) || {})) {
      if (c.revoked) out.push(`${name}: ${c.reason}`);
    }
    return out.join("; ");
  }

  function paint(name) {
    const snap = stores.get(name);
    const node = cards.get(name);
    if (!snap || !node || !caps.length) return;
    const native = snap.native.value, configured = snap.configured.value, current = snap.current.value;
    const why = revokedReasons(snap) || "revoked by health probing";
    for (const c of caps) {
      setCell(name, "native", c, holds(native, c) ? "held" : "absent",
        holds(native, c) ? `${c.name}: the ${snap.driver} driver can` : `${c.name}: the ${snap.driver} driver cannot`);
      const conf = holds(configured, c) ? "held" : holds(native, c) ? "config-off" : "absent";
      setCell(name, "configured", c, conf,
        conf === "held" ? `${c.name}: configured` : conf === "config-off" ? `${c.name}: turned off by configuration` : `${c.name}: not available`);
      const cur = holds(current, c) ? "held" : holds(configured, c) ? "revoked" : conf === "config-off" ? "config-off" : "absent";
      setCell(name, "current", c, cur,
        cur === "held" ? `${c.name}: held now` : cur === "revoked" ? `${c.name}: revoked \u2014 ${why}` : `${c.name}: not configured`);
    }
    const healthy = current === configured;
    node.dataset.healthy = String(healthy);
    node.querySelector(".driver").textContent = snap.driver;
    node.querySelector(".location").textContent = snap.location;
    const badge = node.querySelector(".badge");
    badge.className = "badge " + (healthy ? "healthy" : "degraded");
    badge.textContent = healthy ? "healthy" : "degraded";
    paintHealth(node, snap);
    paintOverride(node, snap, configured);
  }

  function paintOverride(node, snap, configured) {
    const write = caps.find((c) => c.name === "WRITE_ACCESS");
    const unset = (snap.unset && snap.unset.names) || [];
    const isUnset = unset.includes("WRITE_ACCESS");
    const controls = node.querySelector(".override-controls");
    controls.hidden = !write || !holds(configured, write);
    const button = node.querySelector(".writes-toggle");
    button.dataset.action = isUnset ? "set" : "unset";
    button.textContent = isUnset ? "set WRITE_ACCESS" : "unset WRITE_ACCESS";
    node.querySelector(".unset-reason").hidden = isUnset;
    const note = node.querySelector(".override");
    note.hidden = !unset.length;
    note.dataset.unset = unset.join(",");
    note.textContent = unset.length
      ? `${unset.join(", ")} unset by an operator \u2014 ${snap.unset.reason || "no reason given"}`
      : "";
  }

  async function toggleWrites(name, button, reasonInput) {
    const action = button.dataset.action || "unset";
    const body = action === "set"
      ? { set: ["WRITE_ACCESS"] }
      : { unset: ["WRITE_ACCESS"], reason: reasonInput.value.trim() || "unset from the dashboard" };
    button.disabled = true;
    try {
      const resp = await api(`stores/${encodeURIComponent(name)}/capabilities`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (resp.ok) {
        stores.set(name, await resp.json());
        paint(name);
        if (action === "unset") reasonInput.value = "";
        loadSoon(AFTER_CHANGE_MS);
      }
    } finally {
      button.disabled = false;
    }
  }

  function paintHealth(node, snap) {
    const health = snap.health || {};
    const box = node.querySelector(".health");
    const lastAt = health.last_probe_at;
    const dur = health.last_probe_duration;
    box.replaceChildren(
      h("span", {}, "last probe ", h("b", { class: "ago", "data-at": lastAt == null ? "" : String(lastAt), text: ago(lastAt) }),
        dur == null ? "" : ` (${(dur * 1000).toFixed(0)} ms)`),
      h("span", {}, "probes ", h("b", { text: String(health.probes || 0) })),
      h("span", {}, "every ", h("b", { text: `${snap.probe ? snap.probe.interval : "?"} s` }),
        snap.probe && !snap.probe.enabled ? " (disabled)" : ""),
      h("span", {}, "last error ", h("b", { text: health.last_error || "none" }))
    );
    const list = node.querySelector(".reasons");
    const items = [];
    for (const [name, c] of Object.entries(health.capabilities || {})) {
      const state = c.revoked ? "REVOKED" : "ok";
      const counts = c.revoked ? `${c.consecutive_failures} failed` : `${c.consecutive_successes} ok in a row`;
      items.push(
        h("li", { "data-cap": name, "data-revoked": String(c.revoked) },
          `${name}: ${state}${c.reason ? " \u2014 " + c.reason : ""} (${counts})`)
      );
    }
    if (!items.length) items.push(h("li", { text: "no probe verdicts yet" }));
    list.replaceChildren(...items);
  }

  // -- data in ----------------------------------------------------------------------------
  // The event stream opens with the columns and counts (?snapshot=summary): then the page.
  function applySnapshot(snapshot) {
    if (Array.isArray(snapshot.capabilities) && snapshot.capabilities.length) caps = snapshot.capabilities;
    snapshots += 1;
    document.documentElement.dataset.snapshots = String(snapshots);
    loadSoon(0);
  }

  function pageUrl() {
    const args = new URLSearchParams({ sort: "degraded", limit: String(view.limit), offset: String(view.offset) });
    if (view.q) args.set("q", view.q);
    if (view.state) args.set("state", view.state);
    return "stores?" + args.toString();
  }

  // One page request at a time; a wish for another while one runs is remembered, not queued.
  async function loadPage() {
    if (!caps.length) return;
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    again = false;
    lastLoad = Date.now();
    const seq = ++pageSeq;
    try {
      const resp = await api(pageUrl());
      if (resp.ok && seq === pageSeq) applyPage(await resp.json());
    } catch (err) {
      /* the event stream reports connection trouble */
    } finally {
      loading = false;
      if (again) loadSoon(0);
    }
  }

  function loadSoon(delay) {
    const at = Math.max(Date.now() + delay, lastLoad + (delay ? MIN_GAP_MS : 0));
    if (loadTimer !== null && loadAt <= at) return; // an earlier load is already planned
    clearTimeout(loadTimer);
    loadAt = at;
    loadTimer = setTimeout(() => {
      loadTimer = null;
      loadPage();
    }, Math.max(0, at - Date.now()));
  }

  function applyPage(page) {
    if (Array.isArray(page.capabilities) && page.capabilities.length) caps = page.capabilities;
    if (page.matched > 0 && page.offset >= page.matched) {
      // The filter (or a change) left fewer stores than this page starts at: the last page.
      view.offset = Math.floor((page.matched - 1) / view.limit) * view.limit;
      loadSoon(0);
      return;
    }
    stores.clear();
    for (const name of page.names) stores.set(name, page.stores[name]);
    const box = document.getElementById("stores");
    const wanted = page.names.map(card);
    // Cards that left the page go; the others are moved only when the order changed (moving a
    // node would take the focus from a reason being typed).
    for (const [name, node] of cards) if (!stores.has(name)) cards.delete(name);
    for (const node of Array.from(box.children)) if (!wanted.includes(node)) node.remove();
    const same = wanted.length === box.children.length && wanted.every((n, i) => box.children[i] === n);
    if (!same) box.append(...wanted);
    for (const name of page.names) paint(name);
    if (!wanted.length) {
      box.append(h("p", { class: "empty", id: "loading",
        text: page.total ? "No store matches the filter." : "No store is configured." }));
    }
    paintCounts(page);
  }

  function paintCounts(page) {
    const first = page.names.length ? page.offset + 1 : 0;
    const last = page.offset + page.names.length;
    const counts = document.getElementById("counts");
    counts.dataset.total = String(page.total);
    counts.dataset.degraded = String(page.degraded);
    counts.dataset.matched = String(page.matched);
    counts.replaceChildren(
      h("b", { text: String(page.total) }), page.total === 1 ? " store, " : " stores, ",
      h("b", { class: page.degraded ? "degraded-count" : "", text: String(page.degraded) }), " degraded"
    );
    const info = document.getElementById("page-info");
    info.textContent = page.matched
      ? `${first}\u2013${last} of ${page.matched}${view.q || view.state ? " matching" : ""}`
      : "none";
    document.getElementById("prev").disabled = page.offset <= 0;
    document.getElementById("next").disabled = page.next == null;
  }

  function applyChange(change) {
    const snap = stores.get(change.store);
    if (snap) {
      snap.current = { value: change.new, names: change.new_names };
      paint(change.store);
    }
    const parts = [];
    if (change.revoked.length) parts.push("revoked " + change.revoked.join(", "));
    if (change.restored.length) parts.push("restored " + change.restored.join(", "));
    const n = change.changes || 1;
    if (!parts.length) parts.push("flapped and came back");
    if (n > 1) parts.push(`${n} changes`);
    const kind = change.revoked.length ? "revoked" : change.restored.length ? "restored" : "flapped";
    addTimeline(change.at, change.store, kind, parts.join("; "), change.reason);
    // Health details (reasons, counters), the order and the counts come with the next page.
    loadSoon(AFTER_CHANGE_MS);
  }

  // Timeline entries are added in batches (a storm brings hundreds at once), newest first.
  let timelineQueue = [];
  function addTimeline(at, store, kind, what, reason) {
    timelineQueue.push([at, store, kind, what, reason]);
    if (timelineQueue.length === 1) setTimeout(flushTimeline, 0);
  }

  function flushTimeline() {
    const batch = timelineQueue.slice(-MAX_TIMELINE);
    timelineQueue = [];
    const list = document.getElementById("timeline");
    const items = batch.reverse().map(([at, store, kind, what, reason]) => h(
      "li",
      { "data-store": store || "", "data-kind": kind },
      h("span", { class: "when", text: fmtTime(at) }),
      h("span", { class: "store-name", text: store || "" }),
      h("span", { class: "what", text: what }, h("span", { class: "reason", text: reason || "" }))
    ));
    list.prepend(...items);
    while (list.children.length > MAX_TIMELINE) list.lastElementChild.remove();
  }

  // -- the token ---------------------------------------------------------------------------
  function authHeaders(extra) {
    const headers = Object.assign({}, extra || {});
    if (token) headers["Authorization"] = "Bearer " + token;
    return headers;
  }

  // Every request goes through here: a 401 means "ask for the token" (again, if it was wrong).
  async function api(path, init) {
    const resp = await fetch(path, Object.assign({ cache: "no-store" }, init || {}, {
      headers: authHeaders((init && init.headers) || {}),
    }));
    if (resp.status === 401) askToken(token ? "That token was refused. Token:" : "This service needs a token:");
    return resp;
  }

  function askToken(message) {
    const form = document.getElementById("login");
    document.getElementById("login-message").textContent = message;
    form.hidden = false;
    setConn("lost", "token needed");
    document.getElementById("token").focus();
  }

  function useToken(event) {
    event.preventDefault();
    const input = document.getElementById("token");
    token = input.value.trim();
    input.value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("login").hidden = true;
    connect();
  }

  async function probeNow(name, button) {
    button.disabled = true;
    try {
      const resp = await api(`stores/${encodeURIComponent(name)}/probe`, { method: "POST" });
      if (resp.ok) {
        stores.set(name, await resp.json());
        paint(name);
      }
    } finally {
      button.disabled = false;
    }
  }

  function setConn(state, text) {
    const el = document.getElementById("conn");
    el.dataset.state = state;
    el.textContent = text;
  }

  // -- the event stream ----------------------------------------------------------------------
  // EventSource cannot send an Authorization header, so the stream is read with fetch() and
  // parsed here (the text/event-stream format: "event:" and "data:" lines, a blank line ends an
  // event, ":" lines are comments). The alternative, a token in the query string, would leave
  // the token in access logs, proxies and the browser history.
  function onOpen() {
    setConn("live", "live");
    if (!connected) addTimeline(Date.now() / 1000, "", "info", "connected to the event stream", "");
    connected = true;
  }

  function dispatch(event, data) {
    if (event === "snapshot") applySnapshot(JSON.parse(data));
    else if (event === "capability") applyChange(JSON.parse(data));
  }

  async function streamEvents() {
    const resp = await api("events?snapshot=summary", { headers: { Accept: "text/event-stream" } });
    if (resp.status === 401) return false; // api() asked for the token; connect() again after it
    if (!resp.ok || !resp.body) throw new Error(`events: HTTP ${resp.status}`);
    onOpen();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "message";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value;
      // Walk the lines with an index (a storm's batch holds hundreds): cut the buffer once.
      let start = 0;
      let nl;
      while ((nl = buffer.indexOf("\n", start)) >= 0) {
        const line = buffer.slice(start, nl).replace(/\r$/, "");
        start = nl + 1;
        if (line === "") {
          if (data.length) dispatch(event, data.join("\n"));
          event = "message";
          data = [];
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
      }
      buffer = buffer.slice(start);
    }
  }

  function connect() {
    if (streaming) return;
    streaming = true;
    streamEvents().then(
      (ended) => lost(ended ? "event stream ended; reconnecting" : null),
      () => lost("event stream lost; reconnecting")
    );
  }

  function lost(message) {
    streaming = false;
    if (message === null) return; // waiting for a token
    if (connected) addTimeline(Date.now() / 1000, "", "info", message, "");
    connected = false;
    setConn("connecting", "reconnecting\u2026");
    setTimeout(connect, 2000);
  }

  // -- the filter and the pager ------------------------------------------------------------------
  function setView(changes, delay) {
    Object.assign(view, changes);
    pageSeq += 1; // an answer to the old view is no longer wanted
    loadSoon(delay);
  }
  document.getElementById("toolbar").addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("filter").addEventListener("input", (event) => {
    setView({ q: event.target.value.trim(), offset: 0 }, 0);
  });
  document.getElementById("state").addEventListener("change", (event) => {
    setView({ state: event.target.value, offset: 0 }, 0);
  });
  document.getElementById("page-size").addEventListener("change", (event) => {
    setView({ limit: Number(event.target.value) || 24, offset: 0 }, 0);
  });
  document.getElementById("prev").addEventListener("click", () => {
    setView({ offset: Math.max(0, view.offset - view.limit) }, 0);
  });
  document.getElementById("next").addEventListener("click", () => {
    setView({ offset: view.offset + view.limit }, 0);
  });
  view.limit = Number(document.getElementById("page-size").value) || view.limit;

  document.getElementById("login").addEventListener("submit", useToken);
  setInterval(() => loadSoon(0), REFRESH_MS);
  setInterval(() => {
    for (const el of document.querySelectorAll(".ago")) {
      el.textContent = ago(el.dataset.at === "" ? null : Number(el.dataset.at));
    }
  }, 1000);
  connect();
})();
