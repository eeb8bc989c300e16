// The operators' inbox: the live list, the composer (typing, saved replies,
// shortcuts), the customer typing, presence. htmx does the requests and swaps;
// this file only wires what htmx cannot express without inline code (which
// the Content-Security-Policy forbids). The open conversation's timeline and
// read marker are console.js's, as on the room page.
(() => {
  "use strict";
  const inbox = document.getElementById("rk-inbox");
  const filters = document.getElementById("rk-inbox-filters");
  const errorLine = document.getElementById("rk-inbox-error");
  const csrf = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  function post(url, fields) {
    const body = new FormData();
    for (const [k, v] of Object.entries(fields)) body.set(k, v);
    return fetch(url, {method: "POST", body, credentials: "same-origin", headers: {"X-CSRFToken": csrf()}});
  }

  function showError(text) {
    errorLine.textContent = text || "That did not work; try again.";
    errorLine.hidden = false;
    clearTimeout(showError.timer);
    showError.timer = setTimeout(() => { errorLine.hidden = true; }, 6000);
  }
  document.body.addEventListener("htmx:responseError", (e) => showError(e.detail.xhr.responseText));
  document.body.addEventListener("htmx:sendError", () => showError("The server cannot be reached."));

  // ---- the list: re-read when the staff socket says a room moved ----------
  let pending = null, delay = 500;
  const listLive = document.getElementById("rk-list-live");
  function listChanged() {
    if (pending) return;
    // Frames come in bursts (a message, its AI reply, deliveries): one re-read per burst.
    pending = setTimeout(() => { pending = null; htmx.trigger(filters, "rk-list-changed"); }, 60);
  }
  function connectList() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + inbox.dataset.listSocket);
    ws.onopen = () => { listLive.textContent = "live"; delay = 500; };
    // Presence: this inbox is still open (the server counts an operator online while it pings).
    const ping = setInterval(() => { if (ws.readyState === 1) ws.send(JSON.stringify({type: "ping"})); }, 60000);
    ws.addEventListener("close", () => clearInterval(ping));
    ws.onmessage = (m) => {
      let frame; try { frame = JSON.parse(m.data); } catch (err) { return; }
      if (frame.type === "room_activity" || frame.type === "room_created" || frame.type === "room_changed") listChanged();
    };
    ws.onclose = (e) => {
      listLive.textContent = e.code === 4403 ? "live: not allowed" : "live: reconnecting…";
      if (e.code !== 4403) { setTimeout(connectList, delay); delay = Math.min(delay * 2, 15000); }
    };
  }
  connectList();

  const away = document.getElementById("rk-away");
  away.addEventListener("change", () => post(inbox.dataset.presenceUrl, {away: away.checked ? "1" : "0"}));

  // ---- the open conversation ---------------------------------------------------
  const room = document.getElementById("rk-room");
  const typingLine = document.getElementById("rk-customer-typing");
  const typers = new Map();
  function renderTyping() {
    const names = [...typers.values()].map((t) => t.name);
    typingLine.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  }
  // "Seen": under the team's latest message the customer has read (their read receipts, live).
  const customers = new Set((room ? room.dataset.customerIds : "").split(" ").filter(Boolean));
  let customerRead = room ? Number(room.dataset.customerReadSeq) || 0 : 0;
  function renderSeen() {
    for (const old of document.querySelectorAll("#rk-timeline .rk-seen")) old.remove();
    const ours = [...document.querySelectorAll("#rk-timeline li[data-ours]")].filter((li) => Number(li.dataset.seq) <= customerRead);
    const last = ours[ours.length - 1];
    if (!last) return;
    const tag = document.createElement("span");
    tag.className = "rk-tag rk-seen";
    tag.textContent = "Seen";
    last.querySelector(".rk-meta").append(tag);
  }
  if (room) {
    renderSeen();
    new MutationObserver(renderSeen).observe(document.getElementById("rk-timeline"), {childList: true});
    room.addEventListener("rk-frame", (e) => {
      const f = e.detail;
      if (f.type === "ephemeral" && f.kind === "read_receipt" && customers.has(f.participant_id) && f.seq > customerRead) {
        customerRead = f.seq;
        renderSeen();
        return;
      }
      if (f.type === "room_changed") { htmx.ajax("GET", room.dataset.panelUrl, {target: "#rk-inbox-panel", swap: "innerHTML"}); return; }
      if (f.type === "event" && f.event && typers.has(f.event.participant_id)) {
        clearTimeout(typers.get(f.event.participant_id).timer);
        typers.delete(f.event.participant_id);
        renderTyping();
        return;
      }
      if (f.type !== "ephemeral" || f.role === "operator" || !f.participant_id) return;
      if (f.kind === "typing_start") {
        const prev = typers.get(f.participant_id);
        if (prev) clearTimeout(prev.timer);
        const timer = setTimeout(() => { typers.delete(f.participant_id); renderTyping(); }, 6000);
        typers.set(f.participant_id, {name: f.display_name || "The customer", timer});
        renderTyping();
      } else if (f.kind === "typing_stop" && typers.has(f.participant_id)) {
        clearTimeout(typers.get(f.participant_id).timer);
        typers.delete(f.participant_id);
        renderTyping();
      }
    });
  }

  // ---- the composer: typing, saved replies, keys --------------------------------
  const TYPING_REFRESH_MS = 3000, TYPING_IDLE_MS = 4000;
  let typingSentAt = 0, typingIdle = null;
  const text = () => document.getElementById("rk-composer-text");
  const mode = () => (document.querySelector("#rk-composer-form input[name=mode]:checked") || {}).value;

  function typingTick() {
    if (!inbox.dataset.typingUrl || mode() !== "reply") return;
    const now = Date.now();
    if (now - typingSentAt > TYPING_REFRESH_MS) { typingSentAt = now; post(inbox.dataset.typingUrl, {state: "start"}); }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (!typingSentAt || !inbox.dataset.typingUrl) return;
    typingSentAt = 0;
    post(inbox.dataset.typingUrl, {state: "stop"});
  }

  const canned = {items: [], index: 0};
  function cannedList() { return document.getElementById("rk-canned"); }
  function closeCanned() { const ul = cannedList(); if (ul) { ul.hidden = true; ul.replaceChildren(); } canned.items = []; }
  async function openCanned(query) {
    const r = await fetch(inbox.dataset.cannedUrl + "?q=" + encodeURIComponent(query), {credentials: "same-origin"});
    if (!r.ok) return;
    canned.items = (await r.json()).results;
    canned.index = 0;
    renderCanned();
  }
  function renderCanned() {
    const ul = cannedList();
    ul.replaceChildren(...canned.items.map((c, i) => {
      const li = document.createElement("li");
      li.setAttribute("role", "option");
      li.dataset.index = String(i);
      if (i === canned.index) li.setAttribute("aria-selected", "true");
      const key = document.createElement("strong");
      key.textContent = "/" + c.shortcut;
      li.append(key, document.createTextNode(" " + c.text));
      return li;
    }));
    ul.hidden = canned.items.length === 0;
  }
  function useCanned(i) {
    const c = canned.items[i];
    if (!c) return;
    text().value = c.text;
    closeCanned();
    text().focus();
  }
  document.addEventListener("click", (e) => {
    const li = e.target.closest && e.target.closest("#rk-canned li");
    if (li) useCanned(Number(li.dataset.index));
  });

  document.addEventListener("input", (e) => {
    if (e.target.id !== "rk-composer-text") return;
    const value = e.target.value;
    const m = /^\/([\w-]*)$/.exec(value);
    if (m) openCanned(m[1]); else if (canned.items.length) closeCanned();
    if (value.trim()) typingTick(); else stopTyping();
  });

  document.addEventListener("keydown", (e) => {
    const inField = e.target.closest && e.target.closest("input, textarea, select");
    if (e.target.id === "rk-composer-text") {
      if (canned.items.length) {
        if (e.key === "ArrowDown" || e.key === "ArrowUp") {
          e.preventDefault();
          canned.index = (canned.index + (e.key === "ArrowDown" ? 1 : canned.items.length - 1)) % canned.items.length;
          renderCanned();
          return;
        }
        if (e.key === "Enter" || e.key === "Tab") { e.preventDefault(); useCanned(canned.index); return; }
        if (e.key === "Escape") { closeCanned(); return; }
      }
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        stopTyping();
        htmx.trigger(document.getElementById("rk-composer-form"), "submit");
        return;
      }
    }
    if (e.altKey && (e.key === "n" || e.key === "N")) {
      e.preventDefault();
      const radio = document.querySelector(`#rk-composer-form input[name=mode][value=${mode() === "note" ? "reply" : "note"}]`);
      if (radio) { radio.checked = true; text().focus(); }
      return;
    }
    if (inField || e.ctrlKey || e.metaKey || e.altKey) return;
    const rows = [...document.querySelectorAll("#rk-inbox-rows .rk-inbox-row a")];
    const at = rows.findIndex((a) => a.parentElement.classList.contains("rk-current"));
    const click = (id) => { const b = document.getElementById(id); if (b) { e.preventDefault(); b.click(); } };
    switch (e.key) {
      case "/": e.preventDefault(); document.getElementById("rk-inbox-q").focus(); break;
      case "j": if (rows[at + 1]) rows[at + 1].click(); break;
      case "k": if (at > 0) rows[at - 1].click(); break;
      case "r": if (text()) { e.preventDefault(); text().focus(); } break;
      case "a": click("rk-assign-me"); break;
      case "e": click("rk-resolve"); break;
      case "t": click("rk-takeover"); break;
    }
  });

  document.body.addEventListener("htmx:beforeRequest", (e) => {
    if (e.detail.elt && e.detail.elt.id === "rk-composer-form") { stopTyping(); closeCanned(); }
  });
  document.body.addEventListener("htmx:afterSwap", (e) => {
    if (e.detail.target && e.detail.target.id === "rk-composer" && text()) text().focus();
  });
})();
