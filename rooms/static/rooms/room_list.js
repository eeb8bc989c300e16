// The operator console's room list: rows re-rendered by the server when the staff socket says a room changed.
(() => {
  "use strict";
  const status = document.getElementById("rk-list-live");
  let pending = null, delay = 500, socket = null;
  function watch() {
    if (!socket || socket.readyState !== 1) return;
    const ids = [...document.querySelectorAll("#result_list a[data-room-id]")].map((a) => a.dataset.roomId);
    socket.send(JSON.stringify({type: "watch", room_ids: ids}));
  }
  // The rows are re-rendered by the server with the same filters and search:
  // the socket only says which room changed.
  async function refreshRows() {
    pending = null;
    const r = await fetch(location.href, {credentials: "same-origin"});
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = doc.querySelector("#result_list tbody");
    const current = document.querySelector("#result_list tbody");
    if (fresh && current) { current.replaceWith(fresh); watch(); }
    else if (doc.getElementById("changelist") && !current) location.reload();
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = socket = new WebSocket(scheme + location.host + status.dataset.socketPath);
    ws.onopen = () => { status.textContent = "live"; delay = 500; watch(); };
    ws.onmessage = (m) => {
      let frame; try { frame = JSON.parse(m.data); } catch (e) { return; }
      if (frame.type !== "ready" && !pending) pending = setTimeout(refreshRows, 300);
    };
    ws.onclose = (e) => {
      status.textContent = e.code === 4403 ? "live: not allowed" : "live: reconnecting…";
      if (e.code !== 4403) { setTimeout(connect, delay); delay = Math.min(delay * 2, 15000); }
    };
  }
  connect();
})();
