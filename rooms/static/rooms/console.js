// The operator console's room page: live timeline rows over the staff socket,
// and the read marker, which moves with a POST (a GET never writes).
(() => {
  "use strict";
  const root = document.getElementById("rk-room");
  const list = document.getElementById("rk-timeline");
  const live = document.getElementById("rk-live");
  // Only operators get the form; viewers' pages leave the marker alone.
  const readForm = document.getElementById("rk-read-form");
  let lastSeq = Number(root.dataset.lastSeq) || 0;
  let readSeq = Number(root.dataset.readSeq) || 0;
  let fetching = false, again = false, delay = 500, marking = null;
  list.scrollTop = list.scrollHeight;

  // What this page shows is read: tell the server, once per new seq.
  async function markRead() {
    if (!readForm || lastSeq <= readSeq || marking) return;
    const seq = lastSeq;
    const body = new FormData(readForm);
    body.set("seq", String(seq));
    marking = fetch(readForm.action, {
      method: "POST", body, credentials: "same-origin", headers: {"Accept": "application/json"},
    });
    try {
      const r = await marking;
      if (r.ok) readSeq = Math.max(readSeq, (await r.json()).read_seq);
    } catch (e) {
      // Offline for a moment: the next row or reconnect tries again.
    } finally {
      marking = null;
      if (lastSeq > readSeq) setTimeout(markRead, 1000);
    }
  }

  // Rows are rendered (escaped and sanitized) by the server: the socket only
  // says that something new is there.
  async function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    try {
      const r = await fetch(root.dataset.rowsUrl + "?after_seq=" + lastSeq, {credentials: "same-origin"});
      if (r.ok) {
        const tpl = document.createElement("template");
        tpl.innerHTML = await r.text();
        for (const li of tpl.content.querySelectorAll("li[data-seq]")) {
          const seq = Number(li.dataset.seq);
          if (seq > lastSeq && !document.getElementById("rk-event-" + seq)) { list.appendChild(li); lastSeq = seq; }
        }
        list.scrollTop = list.scrollHeight;
        markRead();
      }
    } finally {
      fetching = false;
      if (again) { again = false; refresh(); }
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + root.dataset.socketPath);
    ws.onopen = () => { live.textContent = "live"; delay = 500; refresh(); };
    ws.onmessage = (m) => {
      let frame; try { frame = JSON.parse(m.data); } catch (e) { return; }
      if (frame.type === "event" && frame.event && frame.event.seq > lastSeq) refresh();
      // Other scripts of the page (the inbox's) read the same socket's frames.
      root.dispatchEvent(new CustomEvent("rk-frame", {detail: frame}));
    };
    ws.onclose = (e) => {
      live.textContent = e.code === 4403 ? "live: not allowed" : "live: reconnecting…";
      if (e.code !== 4403) { setTimeout(connect, delay); delay = Math.min(delay * 2, 15000); }
    };
  }
  markRead();
  connect();
})();
