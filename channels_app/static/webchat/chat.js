// RoomKit web chat: the end user's page.
//
// A session (room, participant, signed token) is kept in localStorage. The page
// connects /ws/chat/?token=…, asks the server to replay everything after the
// last seq it holds without a gap on every (re)connect, and dedupes events by
// seq. The server sends a socket's events in seq order; after a replay it says
// {"type":"resumed","through_seq":N}, and from then on each live event follows
// the one before it, so the resume point moves only with the replay's marker
// and with live events after it: a reconnect at any moment loses nothing. Messages
// go through an outbox, persisted too, and are re-sent with the same
// client_msg_id until acknowledged, so one typed while offline is sent once.
//
// Everything a participant wrote is put into the page with textContent or as
// element properties: no HTML from the conversation is ever parsed.
(() => {
  "use strict";
  const { node, hueOf, initials } = window.RoomKitPeople; // webchat/people.js

  const cfg = document.body.dataset;
  const SESSION_KEY = "roomkit.chat.session";
  const OUTBOX_KEY = "roomkit.chat.outbox";
  const MAX_UPLOAD = Number(cfg.maxUploadBytes) || 5 * 1024 * 1024;
  const UPLOAD_TYPES = (cfg.uploadTypes || "image/png,image/jpeg,image/gif,image/webp").split(",");
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const TYPING_REFRESH_MS = 3000;
  const TYPING_IDLE_MS = 2500;
  const TYPING_EXPIRE_MS = 8000;
  const STREAM_IDLE_MS = 60000;
  // An agent that said it is on a reply but neither streams nor answers within this is
  // no longer shown as thinking (its "stop" may have been lost: ephemerals are not stored).
  const THINKING_EXPIRE_MS = 45000;
  // What a running tool is called when the server sends no label: never the tool's own name.
  const TOOL_FALLBACK_LABEL = "Working on it…";
  const NEAR_BOTTOM_PX = 80;
  const RESUME_RETRY_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    statusText: $("status-text"),
    banner: $("banner"),
    log: $("log"),
    messages: $("messages"),
    jump: $("jump"),
    activity: $("activity"),
    welcome: $("welcome"),
    displayName: $("display-name"),
    start: $("start"),
    composer: $("composer"),
    text: $("text"),
    send: $("send"),
    attach: $("attach"),
    file: $("file"),
    attachment: $("attachment"),
    attachmentPreview: $("attachment-preview"),
    attachmentName: $("attachment-name"),
    attachmentRemove: $("attachment-remove"),
    error: $("composer-error"),
    newChat: $("new-chat"),
    demoBadge: $("demo-badge"),
    greeting: $("greeting"),
    greetingText: $("greeting-text"),
    replyTime: $("reply-time"),
  };

  // ---- state -------------------------------------------------------------
  let session = null; // {room_id, participant_id, token, display_name}
  let ws = null;
  let socketSerial = 0;
  let attempt = 0;
  let reconnectTimer = null;
  let sessionRetryTimer = null;
  let lastSeq = 0; // highest seq seen (read receipts)
  let resumeSeq = 0; // every visible event up to here is held: where a reconnect resumes
  let lastReadSent = 0;
  let readTimer = null;
  const seen = new Set(); // seqs rendered or handled
  const byEventId = new Map(); // event id -> message element
  const pendingChanges = new Map(); // target event id -> [edit/delete events that came first]
  const names = new Map(); // participant id -> display name
  const online = new Map(); // participant id -> "online" | "offline"
  const readBy = new Map(); // participant id -> highest seq they read
  const typers = new Map(); // participant id -> {name, timer}
  const tools = new Map(); // agent id -> {node, timer}: the label of the tools it is running
  const thinking = new Map(); // agent id -> {name, timer}: replies owed, until their first token
  const streams = new Map(); // stream id -> {node, textNode, text, agent, timer}
  const streamWaiting = new Map(); // final event id -> stream node it replaces
  const hiddenStreams = new Map(); // stream id seen only from the middle -> typing-like line
  const awaiting = new Map(); // seq -> acknowledged outbox item whose event has not arrived
  let outbox = []; // [{id, frame, text, mediaUrl, node, sentOn, matchedSeq, done, failed}]
  let attachment = null; // {file, previewUrl}
  let typingActive = false;
  let typingSentAt = 0;
  let typingIdleTimer = null;

  // ---- storage -----------------------------------------------------------
  function load(key) {
    try {
      return JSON.parse(localStorage.getItem(key) || "null");
    } catch {
      return null;
    }
  }
  function save(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify(value));
    } catch {
      /* private mode or full: the page still works for this visit */
    }
  }
  function saveOutbox() {
    if (!session) return;
    save(OUTBOX_KEY, {
      room_id: session.room_id,
      participant_id: session.participant_id,
      items: outbox.filter((i) => !i.done).map((i) => ({ id: i.id, frame: i.frame, created_at: i.createdAt })),
    });
  }

  // ---- small helpers -----------------------------------------------------
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  function safeUrl(raw) {
    if (typeof raw !== "string" || !raw) return null;
    try {
      const u = new URL(raw, location.href);
      return u.protocol === "http:" || u.protocol === "https:" || u.protocol === "blob:" ? u.href : null;
    } catch {
      return null;
    }
  }
  const timeFmt = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
  const dateFmt = new Intl.DateTimeFormat([], { month: "short", day: "numeric" });
  function timeLabel(date) {
    const today = new Date();
    const sameDay = date.toDateString() === today.toDateString();
    return sameDay ? timeFmt.format(date) : `${dateFmt.format(date)}, ${timeFmt.format(date)}`;
  }
  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }
  function nameOf(pid, fallback) {
    return names.get(pid) || fallback || "Someone";
  }
  function listNames(list) {
    if (list.length <= 1) return list.join("");
    return `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
  }

  // ---- scrolling ---------------------------------------------------------
  function nearBottom() {
    const l = el.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < NEAR_BOTTOM_PX;
  }
  function scrollToBottom() {
    el.log.scrollTop = el.log.scrollHeight;
    el.jump.hidden = true;
  }
  function afterInsert(wasNear, mine) {
    if (wasNear || mine) scrollToBottom();
    else el.jump.hidden = false;
    scheduleRead();
  }

  // ---- status ------------------------------------------------------------
  function setStatus(kind, text) {
    el.status.classList.toggle("online", kind === "online");
    el.status.classList.toggle("offline", kind === "offline");
    el.statusText.textContent = text;
    el.banner.hidden = kind !== "offline";
  }
  function connectedStatus() {
    const others = [...online.entries()]
      .filter(([pid, st]) => st === "online" && pid !== session?.participant_id)
      .map(([pid]) => nameOf(pid));
    if (others.length) setStatus("online", `${listNames(others)} ${others.length > 1 ? "are" : "is"} online`);
    else setStatus("online", "Connected");
  }

  // ---- content -----------------------------------------------------------
  // Text with web links made clickable; every piece is a text node.
  function appendLinkified(parent, text) {
    const re = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      const href = safeUrl(m[0]);
      if (href) {
        const a = node("a", null, m[0]);
        a.href = href;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        parent.append(a);
      } else {
        parent.append(document.createTextNode(m[0]));
      }
      last = m.index + m[0].length;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
  }
  function textBlock(text) {
    const t = node("div", "text");
    appendLinkified(t, String(text));
    return t;
  }
  function mediaBlock(content) {
    const wrap = node("div", "media");
    const url = safeUrl(content.url);
    const mime = String(content.mime_type || "");
    const label = content.filename || content.caption || "attachment";
    if (!url) {
      wrap.append(node("span", "file-link", String(label)));
      return wrap;
    }
    if (mime.startsWith("image/")) {
      const a = node("a");
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      a.setAttribute("aria-label", `Open image ${label}`);
      const img = node("img");
      img.alt = String(content.caption || content.filename || "Image");
      img.loading = "lazy";
      img.decoding = "async";
      img.referrerPolicy = "no-referrer";
      img.addEventListener("load", () => {
        if (nearBottom() || img.closest(".mine")) scrollToBottom();
      });
      img.addEventListener("error", () => a.replaceWith(node("span", "file-link", `Image unavailable: ${label}`)));
      img.src = url;
      a.append(img);
      wrap.append(a);
    } else if (mime.startsWith("audio/") || mime.startsWith("video/")) {
      const m = node(mime.startsWith("audio/") ? "audio" : "video");
      m.controls = true;
      m.preload = "metadata";
      m.src = url;
      wrap.append(m);
    } else {
      const a = node("a", "file-link", String(label));
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      wrap.append(a);
    }
    return wrap;
  }
  // The body of a bubble for any content kind; returns a fragment.
  function renderContent(content) {
    const frag = document.createDocumentFragment();
    if (!content || typeof content !== "object") return frag;
    switch (content.type) {
      case "text":
      case "system":
        frag.append(textBlock(content.body ?? ""));
        break;
      case "rich": {
        frag.append(textBlock(content.plain_text || content.body || ""));
        const options = [
          ...(content.buttons || []).map((b) => b && (b.title || b.text)),
          ...(content.quick_replies || []),
        ].filter((o) => typeof o === "string" && o);
        if (options.length) {
          const chips = node("div", "chips");
          for (const option of options) {
            const b = node("button", "chip", option);
            b.type = "button";
            b.addEventListener("click", () => queueMessage({ text: option }));
            chips.append(b);
          }
          frag.append(chips);
        }
        break;
      }
      case "media":
      case "audio":
      case "video":
        frag.append(
          mediaBlock({
            ...content,
            mime_type: content.mime_type || (content.type === "media" ? "" : `${content.type}/*`),
          }),
        );
        if (content.type === "audio" && content.transcript) frag.append(textBlock(content.transcript));
        if (content.caption) frag.append(textBlock(content.caption));
        break;
      case "location": {
        const where = `${Number(content.latitude).toFixed(5)}, ${Number(content.longitude).toFixed(5)}`;
        const label = content.label || content.address;
        frag.append(textBlock(`📍 ${label ? `${label} (${where})` : where}`));
        break;
      }
      case "template":
        frag.append(textBlock(content.body || `[${content.name || "template"}]`));
        break;
      case "composite":
        for (const part of content.parts || []) frag.append(renderContent(part));
        break;
      default:
        frag.append(textBlock(content.body || `[${content.type || "message"}]`));
    }
    return frag;
  }

  // ---- message elements --------------------------------------------------
  function buildMessage({ mine, pid, name, createdAt, content }) {
    const row = node("div", `msg ${mine ? "mine" : "theirs"}`);
    if (!mine) {
      const av = node("div", "avatar", initials(name));
      av.setAttribute("aria-hidden", "true");
      av.style.setProperty("--hue", String(hueOf(pid || name)));
      row.append(av);
    }
    const stack = node("div", "stack");
    const meta = node("div", "meta");
    if (!mine) meta.append(node("span", "name", name));
    const time = node("time");
    const date = createdAt ? new Date(createdAt) : new Date();
    time.dateTime = date.toISOString();
    time.title = date.toLocaleString();
    time.textContent = timeLabel(date);
    meta.append(time);
    const bubble = node("div", "bubble");
    bubble.append(renderContent(content));
    const foot = node("div", "foot");
    stack.append(meta, bubble, foot);
    row.append(stack);
    return row;
  }
  function setFoot(row, text, className) {
    const foot = row.querySelector(".foot");
    if (!foot) return;
    foot.replaceChildren();
    if (row.dataset.edited) foot.append(node("span", "edited", "edited"));
    if (text) foot.append(node("span", className || "state", text));
  }

  // Insert a sequenced element in seq order, before the unsequenced tail
  // (messages being sent, replies being streamed).
  function insertBySeq(item, seq) {
    const kids = el.messages.children;
    for (let i = kids.length - 1; i >= 0; i--) {
      const s = kids[i].dataset.seq;
      if (s !== undefined && Number(s) < seq) {
        kids[i].after(item);
        return;
      }
    }
    el.messages.prepend(item);
  }

  // ---- events ------------------------------------------------------------
  function handleEvent(ev, live) {
    if (!ev || typeof ev.seq !== "number") return;
    // After this socket's "resumed" marker its events come in order with no
    // gap: each one moves the resume point. (Before it, they may be live
    // events that overtook the replay; the marker covers them.)
    if (live && ws && ws.inOrder) resumeSeq = Math.max(resumeSeq, ev.seq);
    if (seen.has(ev.seq)) return;
    seen.add(ev.seq);
    lastSeq = Math.max(lastSeq, ev.seq);
    const src = ev.source || {};
    if (src.participant_id && src.display_name) names.set(src.participant_id, src.display_name);
    // Agents speak through their channel: remember its name for their streams and tool calls.
    else if (src.channel_id && src.display_name) names.set(src.channel_id, src.display_name);
    const wasNear = nearBottom();
    const mine = !!session && src.participant_id === session.participant_id;
    const content = ev.content || {};
    if (ev.type === "message" && src.channel_id && thinking.has(src.channel_id)) stopThinking(src.channel_id);
    if (ev.type === "message") {
      const name = src.display_name || names.get(src.participant_id) || src.channel_id || "Someone";
      const row = buildMessage({ mine, pid: src.participant_id || src.channel_id, name, createdAt: ev.created_at, content });
      row.dataset.seq = String(ev.seq);
      row.dataset.eventId = ev.id;
      if (src.participant_id) row.dataset.participant = src.participant_id;
      byEventId.set(ev.id, row);
      const streamed = streamWaiting.get(ev.id);
      if (streamed) {
        streamWaiting.delete(ev.id);
        streamed.remove();
      }
      insertBySeq(row, ev.seq);
      if (mine) settleOwnEvent(ev);
      const acked = awaiting.get(ev.seq); // acknowledged before its event came
      if (acked) {
        awaiting.delete(ev.seq);
        acked.node.remove();
      }
      for (const change of pendingChanges.get(ev.id) || []) applyChange(change);
      pendingChanges.delete(ev.id);
      updateSeen();
      afterInsert(wasNear, mine);
    } else if (ev.type === "edit" || ev.type === "delete") {
      applyChange(ev);
    } else if (content.type === "system" && content.body) {
      const n = node("div", "notice", content.body);
      n.dataset.seq = String(ev.seq);
      insertBySeq(n, ev.seq);
      afterInsert(wasNear, false);
    }
  }

  function applyChange(ev) {
    const content = ev.content || {};
    const target = byEventId.get(content.target_event_id);
    if (!target) {
      const list = pendingChanges.get(content.target_event_id) || [];
      list.push(ev);
      pendingChanges.set(content.target_event_id, list);
      return;
    }
    const bubble = target.querySelector(".bubble");
    if (ev.type === "edit" && content.new_content && !target.classList.contains("deleted")) {
      bubble.replaceChildren(renderContent(content.new_content));
      target.dataset.edited = "1";
      setFoot(target, "");
      updateSeen();
    } else if (ev.type === "delete") {
      bubble.replaceChildren(node("div", "text", "Message deleted"));
      target.classList.add("deleted");
      delete target.dataset.edited;
      setFoot(target, "");
      updateSeen();
    }
  }

  // ---- read receipts -----------------------------------------------------
  // "Seen" under the latest of my messages someone else has read, "Sent" under
  // my latest one if it is newer. Recomputed at most once per tick.
  let seenTimer = null;
  let receiptRows = [];
  function updateSeen() {
    if (seenTimer === null) seenTimer = setTimeout(renderSeen, 0);
  }
  function renderSeen() {
    seenTimer = null;
    if (!session) return;
    let readMax = 0;
    for (const [pid, seq] of readBy) if (pid !== session.participant_id) readMax = Math.max(readMax, seq);
    let lastOwn = null;
    let seenRow = null;
    const kids = el.messages.children;
    for (let i = kids.length - 1; i >= 0 && !seenRow; i--) {
      const row = kids[i];
      if (!row.classList.contains("mine") || row.dataset.seq === undefined) continue;
      if (!lastOwn) lastOwn = row;
      if (readMax && Number(row.dataset.seq) <= readMax) seenRow = row;
    }
    for (const row of receiptRows) if (row !== seenRow && row !== lastOwn) setFoot(row, "");
    receiptRows = [];
    if (seenRow) {
      const seq = Number(seenRow.dataset.seq);
      const readers = [];
      for (const [pid, s] of readBy) if (pid !== session.participant_id && s >= seq) readers.push(nameOf(pid));
      setFoot(seenRow, "Seen", "receipt");
      seenRow.querySelector(".receipt").title = `Seen by ${listNames(readers)}`;
      receiptRows.push(seenRow);
    }
    if (lastOwn && lastOwn !== seenRow) {
      setFoot(lastOwn, "Sent", "state");
      receiptRows.push(lastOwn);
    }
  }
  function scheduleRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(sendRead, 250);
  }
  function sendRead() {
    if (!ws || ws.readyState !== WebSocket.OPEN || document.visibilityState !== "visible" || !nearBottom()) return;
    if (lastSeq > lastReadSent) {
      lastReadSent = lastSeq;
      send({ type: "read", seq: lastSeq });
    }
  }

  // ---- ephemeral ---------------------------------------------------------
  function renderActivity() {
    el.activity.replaceChildren();
    const typing = [...typers.values()].map((t) => t.name);
    for (const h of hiddenStreams.values()) typing.push(h.name);
    if (typing.length) {
      const p = node("p", "typing");
      const dots = node("span", "dots");
      dots.setAttribute("aria-hidden", "true");
      dots.append(node("i"), node("i"), node("i"));
      p.append(dots, document.createTextNode(`${listNames(typing)} ${typing.length > 1 ? "are" : "is"} typing…`));
      el.activity.append(p);
    }
    for (const [agentId, t] of thinking) {
      if (tools.has(agentId)) continue; // its tool's label says what it is doing
      const p = node("p", "thinking");
      const dots = node("span", "dots");
      dots.setAttribute("aria-hidden", "true");
      dots.append(node("i"), node("i"), node("i"));
      p.append(dots, document.createTextNode(`${t.name} is thinking…`));
      el.activity.append(p);
    }
    for (const t of tools.values()) el.activity.append(t.node);
  }
  function handleEphemeral(f) {
    const pid = f.participant_id;
    if (pid && f.display_name) names.set(pid, f.display_name);
    const mine = !!session && pid === session.participant_id;
    switch (f.kind) {
      case "typing_start": {
        if (mine || !pid) return;
        const prev = typers.get(pid);
        if (prev) clearTimeout(prev.timer);
        typers.set(pid, {
          name: nameOf(pid, f.display_name),
          timer: setTimeout(() => {
            typers.delete(pid);
            renderActivity();
          }, TYPING_EXPIRE_MS),
        });
        renderActivity();
        break;
      }
      case "typing_stop": {
        const prev = typers.get(pid);
        if (prev) {
          clearTimeout(prev.timer);
          typers.delete(pid);
          renderActivity();
        }
        break;
      }
      case "presence":
        if (!pid) return;
        online.set(pid, f.status === "online" ? "online" : "offline");
        if (f.status !== "online" && typers.has(pid)) {
          clearTimeout(typers.get(pid).timer);
          typers.delete(pid);
          renderActivity();
        }
        if (ws && ws.readyState === WebSocket.OPEN) connectedStatus();
        break;
      case "read_receipt":
        if (!pid || mine || typeof f.seq !== "number") return;
        readBy.set(pid, Math.max(readBy.get(pid) || 0, f.seq));
        updateSeen();
        break;
      case "tool_call_start":
      case "tool_call_end":
        toolCall(f);
        break;
      case "agent_thinking":
        if (!f.agent_id) return;
        if (f.display_name) names.set(f.agent_id, f.display_name);
        if (f.state === "stop") stopThinking(f.agent_id);
        else startThinking(f.agent_id);
        break;
      default:
        break;
    }
  }
  // {kind:"tool_call_start", agent_id, label, tool_calls:[{id, name, label}]} then {kind:"tool_call_end", agent_id}:
  // one line per agent, in the customer's words, while the tools run. Nothing is left behind when
  // they end (the reply says what they found), and a tool's own name is never shown.
  function toolCall(f) {
    const key = String(f.agent_id || "agent");
    const prev = tools.get(key);
    if (prev) clearTimeout(prev.timer);
    if (f.kind === "tool_call_end") {
      dropTool(key);
      return;
    }
    const labels = Array.isArray(f.tool_calls)
      ? f.tool_calls.map((c) => c && c.label).filter((l) => typeof l === "string" && l)
      : [];
    const label = typeof f.label === "string" && f.label ? f.label : [...new Set(labels)].join(" ") || TOOL_FALLBACK_LABEL;
    const line = node("p", "tool", label);
    tools.set(key, { node: line, timer: setTimeout(() => dropTool(key), STREAM_IDLE_MS) });
    renderActivity();
  }
  function startThinking(agentId) {
    const prev = thinking.get(agentId);
    if (prev) clearTimeout(prev.timer);
    thinking.set(agentId, { name: agentName(agentId), timer: setTimeout(() => stopThinking(agentId), THINKING_EXPIRE_MS) });
    renderActivity();
  }
  function stopThinking(agentId) {
    const prev = thinking.get(agentId);
    if (!prev) return;
    clearTimeout(prev.timer);
    thinking.delete(agentId);
    renderActivity();
  }
  function clearThinking() {
    for (const t of thinking.values()) clearTimeout(t.timer);
    thinking.clear();
  }
  function dropTool(key) {
    tools.delete(key);
    renderActivity();
  }

  // ---- streamed replies --------------------------------------------------
  function agentName(agentId) {
    return names.get(agentId) || (agentId ? String(agentId) : "Assistant");
  }
  function streamStart(f) {
    if (f.agent_id) stopThinking(f.agent_id);
    if (streams.has(f.stream_id)) return;
    const wasNear = nearBottom();
    const name = agentName(f.agent_id);
    const row = buildMessage({
      mine: false,
      pid: f.agent_id || "agent",
      name,
      createdAt: null,
      content: { type: "text", body: "" },
    });
    row.classList.add("streaming");
    row.dataset.streamId = String(f.stream_id);
    row.setAttribute("aria-busy", "true");
    const textNode = row.querySelector(".text");
    el.messages.append(row);
    const s = { node: row, textNode, text: "", agent: f.agent_id, timer: null };
    streams.set(f.stream_id, s);
    touchStream(f.stream_id, s);
    afterInsert(wasNear, false);
  }
  function touchStream(id, s) {
    clearTimeout(s.timer);
    s.timer = setTimeout(() => {
      // Nothing more came: the final event (if any) arrives by seq.
      s.node.remove();
      streams.delete(id);
    }, STREAM_IDLE_MS);
  }
  function streamChunk(f) {
    const s = streams.get(f.stream_id);
    if (!s) {
      // Joined in the middle (after a reconnect): the start is missing, so show
      // that a reply is coming and let the stored event bring the full text.
      if (!hiddenStreams.has(f.stream_id)) {
        hiddenStreams.set(f.stream_id, { name: agentName(f.agent_id) });
        renderActivity();
      }
      return;
    }
    const wasNear = nearBottom();
    s.text += typeof f.delta === "string" ? f.delta : "";
    s.textNode.replaceChildren();
    appendLinkified(s.textNode, s.text);
    touchStream(f.stream_id, s);
    if (wasNear) scrollToBottom();
  }
  function streamEnd(f) {
    if (hiddenStreams.delete(f.stream_id)) renderActivity();
    const s = streams.get(f.stream_id);
    if (!s) return;
    if (s.agent) stopThinking(s.agent);
    clearTimeout(s.timer);
    streams.delete(f.stream_id);
    s.node.classList.remove("streaming");
    s.node.removeAttribute("aria-busy");
    if (f.event_id && byEventId.has(f.event_id)) {
      s.node.remove(); // the stored reply is already shown
    } else if (f.event_id) {
      streamWaiting.set(f.event_id, s.node); // replaced when the event arrives
    } else {
      s.node.remove();
    }
  }
  function dropStreams() {
    for (const s of streams.values()) {
      clearTimeout(s.timer);
      s.node.remove();
    }
    streams.clear();
    hiddenStreams.clear();
  }

  // ---- outbox ------------------------------------------------------------
  function itemLabel(item) {
    if (item.failed) return item.failed;
    if (!ws || ws.readyState !== WebSocket.OPEN) return "Waiting for connection…";
    return "Sending…";
  }
  function addOutboxItem(id, frame, createdAt) {
    const content = frame.media
      ? { type: "media", ...frame.media, ...(frame.text ? { caption: frame.text } : {}) }
      : { type: "text", body: frame.text };
    const row = buildMessage({ mine: true, pid: session.participant_id, name: "", createdAt, content });
    row.classList.add("pending");
    row.dataset.clientMsgId = id;
    const item = {
      id,
      frame,
      createdAt,
      text: frame.media ? null : frame.text,
      mediaUrl: frame.media ? frame.media.url : null,
      node: row,
      sentOn: 0,
      matchedSeq: null,
      done: false,
      failed: null,
    };
    setFoot(row, itemLabel(item));
    outbox.push(item);
    el.messages.append(row);
    return item;
  }
  function queueMessage({ text, media }) {
    if (!session) return;
    const frame = { type: "message", client_msg_id: uuid() };
    if (media) frame.media = media;
    if (text) frame.text = text;
    const wasNear = nearBottom();
    addOutboxItem(frame.client_msg_id, frame, new Date().toISOString());
    saveOutbox();
    flushOutbox();
    afterInsert(wasNear, true);
  }
  function flushOutbox() {
    if (!ws || ws.readyState !== WebSocket.OPEN || !ws.resumed) {
      for (const item of outbox) if (!item.done) setFoot(item.node, itemLabel(item));
      return;
    }
    for (const item of outbox) {
      if (item.done || item.sentOn === ws.serial) continue;
      item.sentOn = ws.serial;
      send(item.frame);
      setFoot(item.node, itemLabel(item));
    }
  }
  function finishItem(item) {
    item.done = true;
    item.node.remove();
    outbox = outbox.filter((i) => i !== item);
    saveOutbox();
  }
  function failItem(item, message) {
    item.done = true;
    item.failed = message;
    item.node.hidden = false;
    item.node.classList.remove("pending");
    item.node.classList.add("failed");
    setFoot(item.node, message);
    outbox = outbox.filter((i) => i !== item);
    saveOutbox();
  }
  // Our own message arrived as an event, maybe before its ack: hide the
  // pending copy so it is never shown twice. It stays in the outbox until
  // acknowledged, so a wrong guess costs nothing but a resend the server dedups.
  function settleOwnEvent(ev) {
    const c = ev.content || {};
    const item = outbox.find(
      (i) =>
        !i.done &&
        i.sentOn &&
        i.matchedSeq === null &&
        ((c.type === "text" && i.text === c.body) || (c.type === "media" && i.mediaUrl === c.url)),
    );
    if (item) {
      item.matchedSeq = ev.seq;
      item.node.hidden = true;
    }
  }
  function handleAck(f) {
    const item = outbox.find((i) => i.id === f.client_msg_id);
    if (!item || item.done) return;
    if (f.status === "blocked" || f.status === "rejected") {
      failItem(item, "Not delivered");
      return;
    }
    if (typeof f.seq === "number" && !seen.has(f.seq)) {
      // Stored, but its event is not here yet: keep showing the message until it is.
      item.done = true;
      outbox = outbox.filter((i) => i !== item);
      saveOutbox();
      if (item.matchedSeq !== null && item.matchedSeq !== f.seq) item.node.hidden = false;
      item.node.classList.remove("pending");
      setFoot(item.node, "Sent");
      awaiting.set(f.seq, item);
      return;
    }
    finishItem(item);
  }
  function handleError(f) {
    if (f.code === "rate_limited" && f.client_msg_id) {
      // Not stored: send it again (same id) once the server allows.
      const item = outbox.find((i) => i.id === f.client_msg_id);
      if (item && !item.done) {
        item.sentOn = 0;
        setFoot(item.node, "Sending… (slowed down)");
        setTimeout(flushOutbox, Math.max(100, (Number(f.retry_after) || 1) * 1000));
        return;
      }
    }
    if (f.code === "resume_failed") {
      // The history could not be read: ask again from the same point.
      const sock = ws;
      setTimeout(() => {
        if (ws === sock && sock.readyState === WebSocket.OPEN) sock.send(JSON.stringify({ type: "resume", after_seq: resumeSeq }));
      }, RESUME_RETRY_MS);
      return;
    }
    if (f.client_msg_id) {
      const item = outbox.find((i) => i.id === f.client_msg_id);
      if (item) {
        failItem(item, `Not sent: ${f.message || f.code || "error"}`);
        return;
      }
    }
    showError(f.message || "Something went wrong.");
  }

  // ---- socket ------------------------------------------------------------
  function send(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }
  function socketUrl() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    return `${proto}://${location.host}${cfg.socketPath || "/ws/chat/"}?token=${encodeURIComponent(session.token)}`;
  }
  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (!session || (ws && ws.readyState <= WebSocket.OPEN)) return;
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");
    const sock = new WebSocket(socketUrl());
    sock.serial = ++socketSerial;
    sock.resumed = false;
    sock.inOrder = false; // until its "resumed" marker
    ws = sock;
    sock.addEventListener("open", () => {
      if (ws !== sock) return;
      attempt = 0;
      // Everything after what we have, in seq order, then live.
      sock.send(JSON.stringify({ type: "resume", after_seq: resumeSeq }));
      sock.resumed = true;
      connectedStatus();
      flushOutbox();
      if (typingActive) sock.send(JSON.stringify({ type: "typing", state: "start" }));
      scheduleRead();
    });
    sock.addEventListener("message", (m) => {
      if (ws !== sock) return;
      let f;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      onFrame(f);
    });
    sock.addEventListener("close", (e) => {
      if (ws !== sock) return;
      ws = null;
      for (const t of typers.values()) clearTimeout(t.timer);
      typers.clear();
      online.clear();
      clearThinking();
      dropStreams();
      renderActivity();
      if (e.code === 4401) {
        // The token is no longer valid (expired, room closed): a new conversation.
        renewSession();
        return;
      }
      scheduleReconnect();
    });
  }
  function scheduleReconnect() {
    if (reconnectTimer || !session) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    setStatus("offline", `Offline — retrying in ${Math.max(1, Math.round(delay / 1000))}s`);
    for (const item of outbox) if (!item.done) setFoot(item.node, itemLabel(item));
    reconnectTimer = setTimeout(connect, delay);
  }
  function reconnectNow() {
    if (session && !ws && reconnectTimer) {
      clearTimeout(reconnectTimer);
      reconnectTimer = null;
      connect();
    }
  }
  function onFrame(f) {
    switch (f.type) {
      case "event":
        handleEvent(f.event, true);
        break;
      case "ack":
        handleAck(f);
        break;
      case "resumed":
        if (typeof f.through_seq === "number") resumeSeq = Math.max(resumeSeq, f.through_seq);
        if (ws) ws.inOrder = true;
        break;
      case "stream_start":
        streamStart(f);
        break;
      case "stream_chunk":
        streamChunk(f);
        break;
      case "stream_end":
        streamEnd(f);
        break;
      case "ephemeral":
        handleEphemeral(f);
        break;
      case "error":
        handleError(f);
        break;
      default:
        break;
    }
  }

  // ---- session -----------------------------------------------------------
  async function startSession(displayName) {
    clearTimeout(sessionRetryTimer);
    setStatus("connecting", "Starting…");
    let resp;
    try {
      resp = await fetch(cfg.sessionsUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(displayName ? { display_name: displayName } : {}),
      });
    } catch {
      resp = null;
    }
    if (!resp || resp.status >= 500) {
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
      attempt += 1;
      setStatus("offline", "Can't reach the server — retrying…");
      sessionRetryTimer = setTimeout(() => startSession(displayName), delay);
      return;
    }
    if (!resp.ok) {
      let message = `Could not start the chat (${resp.status}).`;
      try {
        message = (await resp.json()).error.message || message;
      } catch {
        /* keep the generic message */
      }
      el.start.disabled = false;
      setStatus("offline", message);
      return;
    }
    const data = await resp.json();
    attempt = 0;
    session = {
      room_id: data.room_id,
      participant_id: data.participant_id,
      token: data.token,
      display_name: displayName || "",
      // The channel's greeting, kept with the session so a reload shows it again.
      welcome_message: typeof data.welcome_message === "string" ? data.welcome_message : "",
      reply_time: typeof data.reply_time === "string" ? data.reply_time : "",
      demo_agent: data.demo_agent === true,
    };
    save(SESSION_KEY, session);
    beginConversation();
  }
  function resetView() {
    lastSeq = 0;
    resumeSeq = 0;
    lastReadSent = 0;
    seen.clear();
    byEventId.clear();
    pendingChanges.clear();
    names.clear();
    online.clear();
    readBy.clear();
    for (const t of typers.values()) clearTimeout(t.timer);
    typers.clear();
    for (const t of tools.values()) clearTimeout(t.timer);
    tools.clear();
    clearThinking();
    dropStreams();
    streamWaiting.clear();
    awaiting.clear();
    outbox = [];
    el.messages.replaceChildren();
    renderActivity();
  }
  function closeSocket() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    const sock = ws;
    ws = null;
    if (sock) sock.close(1000);
  }
  function renewSession() {
    const name = session ? session.display_name : "";
    closeSocket();
    session = null;
    save(SESSION_KEY, null);
    save(OUTBOX_KEY, null);
    resetView();
    startSession(name);
  }
  // The channel's welcome and reply time, and the demo badge: shown by the page, never stored in the room.
  function renderGreeting() {
    const welcome = session ? String(session.welcome_message || "") : "";
    const replyTime = session ? String(session.reply_time || "") : "";
    el.greetingText.textContent = welcome;
    el.replyTime.textContent = replyTime;
    el.greeting.hidden = !(welcome || replyTime);
    el.demoBadge.hidden = !(session && session.demo_agent === true);
  }
  function beginConversation() {
    if (session.display_name) names.set(session.participant_id, session.display_name);
    renderGreeting();
    el.welcome.hidden = true;
    el.composer.hidden = false;
    el.newChat.hidden = false;
    const stored = load(OUTBOX_KEY);
    if (stored && stored.room_id === session.room_id && stored.participant_id === session.participant_id) {
      for (const it of stored.items || []) {
        if (it && it.id && it.frame) addOutboxItem(it.id, it.frame, it.created_at || new Date().toISOString());
      }
    }
    connect();
    el.text.focus({ preventScroll: true });
  }
  function showWelcome() {
    renderGreeting();
    el.welcome.hidden = false;
    el.composer.hidden = true;
    el.newChat.hidden = true;
    el.start.disabled = false;
    setStatus("idle", "Start a conversation");
    el.displayName.focus();
  }

  // ---- composer ----------------------------------------------------------
  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }
  function autoGrow() {
    el.text.style.height = "auto";
    el.text.style.height = `${Math.min(el.text.scrollHeight, 144)}px`;
  }
  function typingTick() {
    if (!el.text.value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (!typingActive || now - typingSentAt > TYPING_REFRESH_MS) {
      typingActive = true;
      typingSentAt = now;
      send({ type: "typing", state: "start" });
    }
    clearTimeout(typingIdleTimer);
    typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }
  function stopTyping() {
    clearTimeout(typingIdleTimer);
    if (!typingActive) return;
    typingActive = false;
    send({ type: "typing", state: "stop" });
  }
  function setAttachment(file) {
    showError("");
    if (!file) return;
    if (!UPLOAD_TYPES.includes(file.type)) {
      showError("Only PNG, JPEG, GIF or WebP images can be attached.");
      return;
    }
    if (file.size > MAX_UPLOAD) {
      showError(`That image is ${formatBytes(file.size)}; the limit is ${formatBytes(MAX_UPLOAD)}.`);
      return;
    }
    clearAttachment();
    attachment = { file, previewUrl: URL.createObjectURL(file) };
    el.attachmentPreview.src = attachment.previewUrl;
    el.attachmentPreview.alt = `Preview of ${file.name}`;
    el.attachmentName.textContent = `${file.name} · ${formatBytes(file.size)}`;
    el.attachment.hidden = false;
    el.text.focus();
  }
  function clearAttachment() {
    if (attachment) URL.revokeObjectURL(attachment.previewUrl);
    attachment = null;
    el.file.value = "";
    el.attachment.hidden = true;
    el.attachmentPreview.removeAttribute("src");
    el.attachmentName.textContent = "";
  }
  async function upload(file) {
    const body = new FormData();
    body.append("file", file, file.name);
    let resp;
    try {
      resp = await fetch(cfg.uploadsUrl, {
        method: "POST",
        headers: { Authorization: `Bearer ${session.token}` },
        body,
      });
    } catch {
      throw new Error("Upload failed: check your connection and try again.");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      /* not JSON */
    }
    if (resp.status === 201 && data && data.url) return data;
    if (resp.status === 401) {
      renewSession();
      throw new Error("Your session expired; a new conversation was started.");
    }
    throw new Error((data && data.error && data.error.message) || `Upload failed (${resp.status}).`);
  }
  let sending = false;
  async function submit() {
    if (!session || sending) return;
    const text = el.text.value.trim();
    if (!text && !attachment) return;
    showError("");
    stopTyping();
    if (attachment) {
      sending = true;
      el.send.disabled = true;
      el.attach.disabled = true;
      el.attachmentName.textContent = `Uploading ${attachment.file.name}…`;
      try {
        const media = await upload(attachment.file);
        queueMessage({ text, media });
        el.text.value = "";
        clearAttachment();
      } catch (err) {
        if (attachment) el.attachmentName.textContent = `${attachment.file.name} · ${formatBytes(attachment.file.size)}`;
        showError(err.message);
      } finally {
        sending = false;
        el.send.disabled = false;
        el.attach.disabled = false;
      }
    } else {
      queueMessage({ text });
      el.text.value = "";
    }
    autoGrow();
    el.text.focus();
  }

  // ---- wiring ------------------------------------------------------------
  el.welcome.addEventListener("submit", (e) => {
    e.preventDefault();
    el.start.disabled = true;
    startSession(el.displayName.value.trim());
  });
  el.composer.addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
  el.text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  });
  el.text.addEventListener("input", () => {
    autoGrow();
    typingTick();
  });
  el.text.addEventListener("blur", stopTyping);
  el.text.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      e.preventDefault();
      setAttachment(file);
    }
  });
  el.attach.addEventListener("click", () => el.file.click());
  el.file.addEventListener("change", () => setAttachment(el.file.files[0]));
  el.attachmentRemove.addEventListener("click", clearAttachment);
  el.composer.addEventListener("dragover", (e) => e.preventDefault());
  el.composer.addEventListener("drop", (e) => {
    const file = [...(e.dataTransfer?.files || [])][0];
    if (file) {
      e.preventDefault();
      setAttachment(file);
    }
  });
  el.jump.addEventListener("click", scrollToBottom);
  el.log.addEventListener("scroll", () => {
    if (nearBottom()) {
      el.jump.hidden = true;
      scheduleRead();
    }
  });
  el.newChat.addEventListener("click", () => {
    closeSocket();
    session = null;
    save(SESSION_KEY, null);
    save(OUTBOX_KEY, null);
    resetView();
    showWelcome();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      reconnectNow();
      scheduleRead();
    }
  });
  window.addEventListener("online", reconnectNow);
  window.addEventListener("focus", scheduleRead);

  // ---- start -------------------------------------------------------------
  const stored = load(SESSION_KEY);
  if (stored && stored.room_id && stored.participant_id && stored.token) {
    session = stored;
    beginConversation();
  } else {
    showWelcome();
  }
})();
