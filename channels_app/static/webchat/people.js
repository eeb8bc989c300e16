// What the chat page and the voice page both show of people: elements, avatar colours, initials.
// Loaded (deferred) before each page's own script, which takes these from window.RoomKitPeople.
(() => {
  "use strict";
  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }
  // A stable hue per name or id, so a person keeps their avatar colour on every page.
  function hueOf(key) {
    let h = 0;
    for (const ch of String(key)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }
  function initials(name) {
    const parts = String(name || "?").trim().split(/\s+/).filter(Boolean);
    const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || "?").slice(0, 2);
    return Array.from(letters).slice(0, 2).join("");
  }
  window.RoomKitPeople = Object.freeze({ node, hueOf, initials });
})();
