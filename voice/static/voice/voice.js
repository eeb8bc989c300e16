// RoomKit voice page: talk to an agent from the browser.
//
// Start call (a user gesture, which browsers require before audio may play)
// asks for the microphone, gets a session token for this page's voice channel
// (POST /api/v1/chat/sessions {channel_id}) and opens /ws/voice/?token=….
// The microphone runs through an AudioWorklet that sends 20 ms binary frames
// of 16-bit little-endian mono PCM at 16 kHz (640 bytes). The server first
// announces the rate of its own audio ({"type":"audio_format"}), then sends the
// agent's speech as binary PCM, played through a jitter buffer in a second
// AudioWorklet, and JSON frames that the page shows: the call's state, the
// caller's words as they are recognised, and the agent's words. barge_in, or
// playback_stop for any reason but "done", flushes the buffer at once. Each
// time the buffer plays dry between a playback_start and the server's
// playback_stop the page says {"type":"playback_done","samples":N}: the N
// samples (at the server's rate) received since that playback_start have all
// been heard. Hang up sends {"type":"hangup"}.
//
// The capture context is created at 16 kHz where the browser can connect a
// microphone to it (its own resampler does the work); where it cannot, the
// capture worklet resamples from the context's rate. `?capture=native` forces
// the second way (diagnostics, tests).
//
// Everything said in the call is put into the page with textContent: no HTML
// from the conversation is ever parsed. window.roomkitVoice holds counters
// (frames sent, samples received and played) for diagnostics and tests.
(() => {
  "use strict";
  const { node, hueOf, initials } = window.RoomKitPeople; // webchat/people.js

  const cfg = document.body.dataset;
  const TARGET_RATE = 16000;
  const FRAME_MS = 20;
  const PREBUFFER_MS = 60;
  // More audio than this waiting in the socket means the network cannot keep
  // up: newer frames are dropped rather than heard late.
  const MAX_SOCKET_BACKLOG_BYTES = 32000;
  const METER_FLOOR_DB = -60;
  const METER_CEIL_DB = -6;
  const NEAR_BOTTOM_PX = 80;

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    statusText: $("status-text"),
    banner: $("banner"),
    log: $("log"),
    messages: $("messages"),
    welcome: $("welcome"),
    displayName: $("display-name"),
    state: $("state"),
    stateLabel: $("state-label"),
    stateDetail: $("state-detail"),
    meter: $("meter"),
    call: $("call"),
    callLabel: $("call-label"),
  };

  const stats = {
    state: "idle",
    captureMode: null, // "context" (the browser resamples) | "worklet" (pcm-resampler.js)
    captureRate: null, // the capture AudioContext's rate
    playbackRate: null, // the playback AudioContext's rate
    serverRate: null, // from audio_format
    framesSent: 0,
    bytesSent: 0,
    frameSizes: {}, // byte length → count, of frames sent
    framesDropped: 0,
    samplesReceived: 0, // at serverRate
    playbackReceived: 0, // … since the last playback_start
    playbackHeard: 0, // … of those, played out when the buffer last ran dry
    playedSamples: 0, // at playbackRate
    playbackStarts: 0,
    flushes: 0,
    playbackDoneSent: 0,
    sent: [], // JSON frames the page sent, in order
  };
  window.roomkitVoice = stats;

  let call = null; // the call in progress, see startCall()
  let level = 0; // the meter's shown level, 0..1
  let meterTarget = 0;
  let meterFrame = 0;

  // ---- small helpers -----------------------------------------------------
  function agentName(agentId) {
    const words = String(agentId || "Agent").replace(/[-_]+/g, " ").trim();
    return words ? words[0].toUpperCase() + words.slice(1) : "Agent";
  }
  const timeFmt = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
  function clock(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  // ---- status, state, errors -----------------------------------------------
  function setStatus(kind, text) {
    el.status.classList.toggle("online", kind === "online");
    el.status.classList.toggle("live", kind === "live");
    el.status.classList.toggle("offline", kind === "offline");
    el.statusText.textContent = text;
  }
  const STATES = {
    idle: ["Ready", "Press Start call to begin"],
    connecting: ["Connecting…", "Setting up the call"],
    listening: ["Listening", "Go ahead, we're listening"],
    thinking: ["Thinking", "Working on an answer"],
    speaking: ["Speaking", "Talk any time to interrupt"],
    ended: ["Call ended", "Press Start call to call again"],
  };
  function setState(state) {
    const [label, detail] = STATES[state] || STATES.idle;
    stats.state = state;
    el.state.dataset.state = state;
    el.stateLabel.textContent = label;
    el.stateDetail.textContent = detail;
  }
  function showError(message) {
    el.banner.textContent = message || "";
    el.banner.hidden = !message;
  }
  function setButton(inCall, disabled = false) {
    el.call.classList.toggle("start", !inCall);
    el.call.classList.toggle("end", inCall);
    el.call.disabled = disabled;
    el.callLabel.textContent = inCall ? "Hang up" : "Start call";
    el.call.setAttribute("aria-label", inCall ? "Hang up" : "Start call");
  }

  // ---- the microphone meter --------------------------------------------------
  function onLevel(rms) {
    const db = 20 * Math.log10(rms + 1e-9);
    meterTarget = Math.min(1, Math.max(0, (db - METER_FLOOR_DB) / (METER_CEIL_DB - METER_FLOOR_DB)));
    if (!meterFrame) meterFrame = requestAnimationFrame(drawMeter);
  }
  function drawMeter() {
    meterFrame = 0;
    // Rise at once, fall slowly: peaks stay readable.
    level = meterTarget > level ? meterTarget : level * 0.85 + meterTarget * 0.15;
    if (level < 0.005) level = 0;
    const shown = level.toFixed(3);
    el.meter.style.setProperty("--level", shown);
    el.state.style.setProperty("--level", shown);
    el.meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
    if (level > 0 || meterTarget > 0) meterFrame = requestAnimationFrame(drawMeter);
  }
  function resetMeter() {
    meterTarget = 0;
    level = 0;
    el.meter.style.setProperty("--level", "0");
    el.state.style.setProperty("--level", "0");
    el.meter.setAttribute("aria-valuenow", "0");
  }

  // ---- the transcript ------------------------------------------------------
  function nearBottom() {
    const l = el.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < NEAR_BOTTOM_PX;
  }
  function append(item) {
    const wasNear = nearBottom();
    el.messages.append(item);
    if (wasNear) el.log.scrollTop = el.log.scrollHeight;
  }
  function buildMessage({ mine, key, name }) {
    const row = node("div", `msg ${mine ? "mine" : "theirs"}`);
    if (!mine) {
      const av = node("div", "avatar", initials(name));
      av.setAttribute("aria-hidden", "true");
      av.style.setProperty("--hue", String(hueOf(key || name)));
      row.append(av);
    }
    const stack = node("div", "stack");
    const meta = node("div", "meta");
    if (!mine) meta.append(node("span", "name", name));
    const time = node("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.title = now.toLocaleString();
    time.textContent = timeFmt.format(now);
    meta.append(time);
    const bubble = node("div", "bubble");
    bubble.append(node("div", "text"));
    stack.append(meta, bubble, node("div", "foot"));
    row.append(stack);
    return row;
  }
  function setText(row, text) {
    row.querySelector(".text").textContent = text;
  }
  function notice(text) {
    append(node("div", "notice", text));
  }
  // The caller's words: one bubble shown while recognised, made final by `transcript`.
  function onPartial(text) {
    if (!call) return;
    text = String(text || "").trim();
    if (!text) return;
    if (!call.partial) {
      call.partial = buildMessage({ mine: true });
      call.partial.classList.add("partial");
      append(call.partial);
    }
    setText(call.partial, text);
    if (nearBottom()) el.log.scrollTop = el.log.scrollHeight;
  }
  function onTranscript(f) {
    if (!call) return;
    const text = String(f.text || "").trim();
    let row = call.partial;
    call.partial = null;
    if (!text) {
      if (row) row.remove();
      return;
    }
    if (!row) {
      row = buildMessage({ mine: true });
      append(row);
    }
    row.classList.remove("partial");
    setText(row, text);
    if (typeof f.seq === "number") row.dataset.seq = String(f.seq);
    if (f.event_id) row.dataset.eventId = String(f.event_id);
    // What the agent says next is an answer to this: a new bubble.
    call.agent = null;
  }
  // The agent's words. A reply may come as one frame or sentence by sentence
  // (each frame new text, or the text so far): one bubble per reply either way.
  // Frames name their reply (`reply`): its sentences find its bubble whatever
  // else arrived in between (the caller's transcript, another reply).
  function onAgentText(f) {
    if (!call) return;
    const text = String(f.text || "").trim();
    if (!text) return;
    const agentId = String(f.agent_id || "agent");
    const reply = f.reply ? String(f.reply) : "";
    const last = call.agent;
    const current = reply
      ? call.replies.get(reply)
      : last && last.agentId === agentId && !last.row.classList.contains("interrupted") && last;
    if (current) {
      current.text = text.startsWith(current.text) ? text : `${current.text} ${text}`;
      setText(current.row, current.text);
      call.agent = current;
      call.lastAgent = current;
      if (nearBottom()) el.log.scrollTop = el.log.scrollHeight;
      return;
    }
    const row = buildMessage({ mine: false, key: agentId, name: agentName(agentId) });
    row.dataset.agentId = agentId;
    setText(row, text);
    append(row);
    call.agent = { agentId, row, text };
    call.lastAgent = call.agent;
    if (reply) call.replies.set(reply, call.agent);
  }
  // What is playing is the agent's latest words: a cut marks their bubble, even when the
  // caller's transcript came after them (it ends `call.agent`, not the playback).
  function markInterrupted() {
    const current = call && call.lastAgent;
    if (!current || current.row.classList.contains("interrupted")) return;
    current.row.classList.add("interrupted");
    const foot = current.row.querySelector(".foot");
    foot.replaceChildren(node("span", "cut", "Interrupted"));
  }

  // ---- playback ------------------------------------------------------------
  // The server sends speech faster than it is played, so the caller hears the
  // agent for a while after the server has moved on: the state shown is what
  // the caller hears ("speaking" while the jitter buffer plays). The buffer
  // also runs dry between two slowly made sentences, so each playback_done
  // says how much of this playback was heard: the server knows whether it has
  // sent more since.
  function showState(c) {
    setState(c.audible ? "speaking" : c.serverState);
  }
  function flushPlayback(c) {
    if (!c.playNode) return;
    stats.flushes += 1;
    c.playNode.port.postMessage({ type: "flush" });
    c.awaitingDone = false;
    c.audible = false;
    showState(c);
  }
  function onPlaybackMessage(c, msg) {
    if (call !== c || !msg) return;
    if (typeof msg.played === "number") stats.playedSamples = msg.played;
    if (msg.type === "playing") {
      stats.playbackStarts += 1;
      c.audible = true;
      showState(c);
    } else if (msg.type === "drained") {
      c.audible = false;
      stats.playbackHeard = msg.heard;
      showState(c);
      if (c.awaitingDone && msg.heard > 0) {
        stats.playbackDoneSent += 1;
        sendJson(c, { type: "playback_done", samples: msg.heard });
      }
    }
  }

  // ---- the socket ----------------------------------------------------------
  function sendJson(c, frame) {
    if (c.ws && c.ws.readyState === WebSocket.OPEN) {
      c.ws.send(JSON.stringify(frame));
      stats.sent.push(frame);
    }
  }
  function onMicFrame(c, msg) {
    if (call !== c || !msg || msg.type !== "frame") return;
    onLevel(msg.rms);
    const ws = c.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > MAX_SOCKET_BACKLOG_BYTES) {
      stats.framesDropped += 1;
      return;
    }
    ws.send(msg.pcm);
    stats.framesSent += 1;
    stats.bytesSent += msg.pcm.byteLength;
    stats.frameSizes[msg.pcm.byteLength] = (stats.frameSizes[msg.pcm.byteLength] || 0) + 1;
  }
  function onFrame(c, f) {
    switch (f.type) {
      case "audio_format":
        if (f.encoding && f.encoding !== "pcm_s16le") {
          endCall(c, { error: `The server sends audio this page cannot play (${f.encoding}).` });
          return;
        }
        if ((f.channels || 1) !== 1) {
          endCall(c, { error: `The server sends ${f.channels}-channel audio; this page plays mono only.` });
          return;
        }
        stats.serverRate = Number(f.sample_rate) || TARGET_RATE;
        c.playNode.port.postMessage({ type: "format", sampleRate: stats.serverRate });
        break;
      case "state":
        if (STATES[f.state]) {
          c.serverState = f.state;
          showState(c);
        }
        break;
      case "partial_transcript":
        onPartial(f.text);
        break;
      case "transcript":
        onTranscript(f);
        break;
      case "agent_text":
        onAgentText(f);
        break;
      case "playback_start":
        c.awaitingDone = true;
        stats.playbackReceived = 0;
        stats.playbackHeard = 0;
        c.playNode.port.postMessage({ type: "epoch" });
        break;
      case "playback_stop":
        // The server's playback is over: nothing more to report for it.
        c.awaitingDone = false;
        if (f.reason !== "done") {
          // Cut off (barge-in, an operator, a hang-up): stop at once.
          flushPlayback(c);
          markInterrupted();
        }
        break;
      case "barge_in":
        flushPlayback(c);
        markInterrupted();
        break;
      case "dtmf":
        if (f.digit !== undefined && f.digit !== null) notice(`Keypad: ${String(f.digit).slice(0, 4)}`);
        break;
      case "error":
        showError(f.message || "The call ran into a problem.");
        break;
      default:
        break;
    }
  }
  function openSocket(c, token) {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}${cfg.socketPath || "/ws/voice/"}?token=${encodeURIComponent(token)}`);
    ws.binaryType = "arraybuffer";
    c.ws = ws;
    ws.addEventListener("open", () => {
      if (call !== c) return;
      c.startedAt = Date.now();
      setStatus("live", "In call · 0:00");
      c.clockTimer = setInterval(() => setStatus("live", `In call · ${clock(Date.now() - c.startedAt)}`), 1000);
      showState(c);
      setButton(true);
      notice("Call started");
    });
    ws.addEventListener("message", (m) => {
      if (call !== c) return;
      if (typeof m.data === "string") {
        let f;
        try {
          f = JSON.parse(m.data);
        } catch {
          return;
        }
        if (f && typeof f === "object") onFrame(c, f);
        return;
      }
      // The agent's speech: 16-bit mono PCM at the announced rate.
      stats.samplesReceived += m.data.byteLength >> 1;
      stats.playbackReceived += m.data.byteLength >> 1;
      c.playNode.port.postMessage({ type: "pcm", pcm: m.data }, [m.data]);
    });
    ws.addEventListener("close", (e) => {
      if (call !== c) return;
      c.ws = null;
      if (e.code === 4401) {
        endCall(c, { error: "Your session has expired. Press Start call to begin a new call." });
      } else if (!c.startedAt) {
        endCall(c, { error: `Could not connect the call (${e.code}). Check your connection and try again.` });
      } else if (e.code === 1000 || e.code === 1001) {
        endCall(c, { note: "The call was ended" });
      } else if (e.code === 1011) {
        endCall(c, { error: "The server could not continue the call. Press Start call to try again in a moment." });
      } else {
        endCall(c, { error: `The connection was lost (${e.code}). Press Start call to call again.` });
      }
    });
  }

  // ---- the call ------------------------------------------------------------
  function microphoneError(err) {
    switch (err && err.name) {
      case "NotAllowedError":
      case "SecurityError":
        return "Microphone access was denied. Allow the microphone for this site in your browser's settings, then press Start call again.";
      case "NotFoundError":
      case "OverconstrainedError":
        return "No microphone was found. Connect one and try again.";
      case "NotReadableError":
      case "AbortError":
        return "The microphone could not be started: another application may be using it.";
      default:
        return `The microphone could not be started (${(err && err.message) || err}).`;
    }
  }
  async function createSession(displayName) {
    let resp;
    try {
      resp = await fetch(cfg.sessionsUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(displayName ? { channel_id: cfg.channelId, display_name: displayName } : { channel_id: cfg.channelId }),
      });
    } catch {
      throw new Error("Can't reach the server. Check your connection and try again.");
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      /* not JSON */
    }
    if (resp.ok && data && data.token) return data;
    if (resp.status === 429) {
      const wait = Number(resp.headers.get("Retry-After")) || 60;
      throw new Error(`Too many calls from this address. Try again in ${wait} s.`);
    }
    const message = data && data.error && data.error.message;
    throw new Error(message ? `Could not start the call: ${message}.` : `Could not start the call (${resp.status}).`);
  }

  async function startCall() {
    if (call) return;
    showError("");
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The microphone needs a secure connection: open this page over https.");
      return;
    }
    const AudioCtx = window.AudioContext || window.webkitAudioContext;
    if (!AudioCtx || typeof AudioWorkletNode === "undefined") {
      showError("This browser cannot run voice calls (no AudioWorklet). Try a current Chrome, Edge, Firefox or Safari.");
      return;
    }
    const c = {
      ws: null,
      stream: null,
      playCtx: null,
      captureCtx: null,
      playNode: null,
      captureNode: null,
      partial: null,
      agent: null, // the bubble the agent's next words join (none after the caller's transcript)
      lastAgent: null, // the bubble of the agent's latest words
      replies: new Map(), // reply id -> its bubble (see onAgentText)
      serverState: "listening",
      audible: false, // the agent's speech is playing
      awaitingDone: false, // between playback_start and playback_stop: drains are reported
      clockTimer: null,
      startedAt: 0,
      ended: false,
    };
    call = c;
    setButton(true, true);
    setState("connecting");
    setStatus("connecting", "Connecting…");
    el.welcome.hidden = true;

    // Audio contexts are created inside the click, so browsers let them play.
    const forceWorklet = new URLSearchParams(location.search).get("capture") === "native";
    try {
      c.playCtx = new AudioCtx({ latencyHint: "interactive" });
      if (!forceWorklet) {
        try {
          c.captureCtx = new AudioCtx({ sampleRate: TARGET_RATE, latencyHint: "interactive" });
        } catch {
          c.captureCtx = null; // no context at 16 kHz here: the worklet resamples
        }
      }
    } catch (err) {
      endCall(c, { error: `Audio could not be started (${err.message || err}).` });
      return;
    }
    const resumed = Promise.all([c.playCtx.resume(), c.captureCtx && c.captureCtx.resume()]).catch(() => {});

    try {
      c.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
        video: false,
      });
    } catch (err) {
      endCall(c, { error: microphoneError(err) });
      return;
    }
    if (call !== c) return;
    await resumed;

    try {
      let source = null;
      if (c.captureCtx) {
        try {
          source = c.captureCtx.createMediaStreamSource(c.stream);
          await c.captureCtx.audioWorklet.addModule(cfg.captureWorklet);
        } catch {
          // Some browsers cannot connect a microphone to a context at another rate.
          c.captureCtx.close().catch(() => {});
          c.captureCtx = null;
          source = null;
        }
      }
      if (!c.captureCtx) {
        c.captureCtx = c.playCtx;
        await c.captureCtx.audioWorklet.addModule(cfg.captureWorklet);
        source = c.captureCtx.createMediaStreamSource(c.stream);
      }
      await c.playCtx.audioWorklet.addModule(cfg.playbackWorklet);
      if (call !== c) return;
      stats.captureMode = c.captureCtx === c.playCtx ? "worklet" : "context";
      stats.captureRate = c.captureCtx.sampleRate;
      stats.playbackRate = c.playCtx.sampleRate;

      c.captureNode = new AudioWorkletNode(c.captureCtx, "roomkit-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate: TARGET_RATE, frameMs: FRAME_MS },
      });
      c.captureNode.port.onmessage = (e) => onMicFrame(c, e.data);
      // A silent path to the destination keeps the capture node rendering in every browser.
      const silent = c.captureCtx.createGain();
      silent.gain.value = 0;
      source.connect(c.captureNode);
      c.captureNode.connect(silent).connect(c.captureCtx.destination);
      c.source = source;

      c.playNode = new AudioWorkletNode(c.playCtx, "roomkit-playback", {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { prebufferMs: PREBUFFER_MS, sourceRate: TARGET_RATE },
      });
      c.playNode.port.onmessage = (e) => onPlaybackMessage(c, e.data);
      c.playNode.connect(c.playCtx.destination);
    } catch (err) {
      endCall(c, { error: `Audio could not be started (${err.message || err}).` });
      return;
    }

    let session;
    try {
      session = await createSession(el.displayName.value.trim());
    } catch (err) {
      endCall(c, { error: err.message });
      return;
    }
    if (call !== c) return;
    openSocket(c, session.token);
  }

  // Tear the call down; `hangup`: the caller pressed the button (tell the server).
  function endCall(c, { hangup = false, error = "", note = "" } = {}) {
    if (c.ended) return;
    c.ended = true;
    if (call === c) call = null;
    clearInterval(c.clockTimer);
    const ws = c.ws;
    c.ws = null;
    if (ws) {
      if (hangup && ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ type: "hangup" }));
        stats.sent.push({ type: "hangup" });
      }
      // The close frame follows the hang-up frame on the same connection.
      if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
    }
    if (c.stream) for (const t of c.stream.getTracks()) t.stop();
    if (c.captureNode) {
      c.captureNode.port.postMessage({ type: "stop" });
      c.captureNode.port.onmessage = null;
      c.captureNode.disconnect();
    }
    if (c.source) c.source.disconnect();
    if (c.playNode) {
      c.playNode.port.onmessage = null;
      c.playNode.disconnect();
    }
    for (const ctx of new Set([c.captureCtx, c.playCtx])) if (ctx && ctx.state !== "closed") ctx.close().catch(() => {});
    if (c.partial) c.partial.remove();
    resetMeter();
    setButton(false);
    if (c.startedAt) {
      notice(`${note || "Call ended"} · ${clock(Date.now() - c.startedAt)}`);
      setState("ended");
    } else {
      setState("idle");
      if (!el.messages.children.length) el.welcome.hidden = false;
    }
    if (error) {
      showError(error);
      setStatus("offline", c.startedAt ? "Disconnected" : "Not connected");
    } else {
      setStatus("idle", "Ready to call");
    }
  }

  // ---- wiring --------------------------------------------------------------
  el.call.addEventListener("click", () => {
    if (call) endCall(call, { hangup: true });
    else startCall();
  });
  el.welcome.addEventListener("submit", (e) => {
    e.preventDefault();
    startCall();
  });
  // Leaving the page hangs up, so the agent does not talk to an empty room.
  window.addEventListener("pagehide", () => {
    if (call) endCall(call, { hangup: true });
  });

  setButton(false);
  setState("idle");
  setStatus("idle", "Ready to call");
})();
