// The agent's speech: an AudioWorklet jitter buffer.
//
// The page posts the server's PCM chunks here as they arrive (16-bit mono at
// the rate the server announced); they are resampled to the AudioContext's
// rate and queued. Playback starts once PREBUFFER (~60 ms) is queued, or once
// the first chunk has waited that long (a short tail still plays). If the
// network is late and the queue runs dry, the last samples fade out and the
// buffer primes again before fading back in: a late chunk costs a short gap,
// never a click or a stutter of 3 ms scraps. A flush (barge-in, the server's
// playback_stop) drops everything queued at once, after a 2.5 ms fade.
//
// Messages in: {type:"format", sampleRate}, {type:"pcm", pcm: ArrayBuffer},
// {type:"flush"}, {type:"epoch"} (a new playback starts: count its samples
// from zero). Out: {type:"playing"} when sound starts, {type:"drained"} when
// the queue empties while playing, {type:"stats"} every ~50 ms while active;
// each carries `played` (samples played so far, at the context's rate),
// `heard` (samples of the server's audio since the epoch, at its rate, all
// played out when `drained` says so), `queued` and `drains` (times the queue
// ran dry mid-quantum).
import { StreamResampler } from "./pcm-resampler.js";

const DEFAULT_SERVER_RATE = 16000;
const STATS_EVERY_MS = 50;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.prebuffer = Math.round((sampleRate * (opts.prebufferMs ?? 60)) / 1000);
    this.fadeLen = Math.max(1, Math.round(sampleRate * 0.0025));
    this.setFormat(opts.sourceRate || DEFAULT_SERVER_RATE);
    this.queue = []; // Float32Array chunks at the context's rate
    this.head = 0; // read position in queue[0]
    this.queued = 0; // samples in the queue
    this.state = "idle"; // idle → buffering → playing → (dry) buffering …
    this.waited = 0; // samples of time spent buffering with something queued
    this.fadeIn = 0; // samples of fade-in still to apply
    this.tail = null; // the fading last moment of a flushed queue
    this.held = false; // the resampler holds input it has not turned into output yet
    this.heard = 0; // samples of the server's audio queued since the last epoch
    this.played = 0;
    this.drains = 0;
    this.sinceStats = 0;
    this.statsEvery = Math.round((sampleRate * STATS_EVERY_MS) / 1000);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  setFormat(rate) {
    if (this.resampler && this.resampler.inRate === Math.round(rate)) return;
    this.resampler = new StreamResampler(rate, sampleRate);
  }

  onMessage(msg) {
    if (!msg) return;
    if (msg.type === "pcm") this.enqueue(msg.pcm);
    else if (msg.type === "format") this.setFormat(msg.sampleRate);
    else if (msg.type === "flush") this.flush();
    else if (msg.type === "epoch") this.heard = 0; // in order with the chunks: those after it are the new playback's
  }

  enqueue(buffer) {
    const pcm = new Int16Array(buffer, 0, buffer.byteLength >> 1);
    if (pcm.length === 0) return;
    this.heard += pcm.length;
    const floats = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) floats[i] = pcm[i] / 32768;
    const out = new Float32Array(this.resampler.maxOutput(floats.length));
    const n = this.resampler.process(floats, out);
    this.held = !this.resampler.passthrough;
    if (n > 0) this.pushChunk(n === out.length ? out : out.slice(0, n));
  }

  pushChunk(chunk) {
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.state === "idle") {
      this.state = "buffering";
      this.waited = 0;
    }
  }

  flush() {
    // Keep only a 2.5 ms fade of what would have played next, so the cut does not click.
    if (this.state === "playing" && this.queued > 0) {
      const len = Math.min(this.fadeLen, this.queued);
      this.tail = new Float32Array(len);
      this.take(this.tail, 0, len);
      for (let i = 0; i < len; i++) this.tail[i] *= 1 - (i + 1) / len;
    }
    this.queue = [];
    this.head = 0;
    this.queued = 0;
    this.state = "idle";
    this.resampler.reset();
    this.held = false;
    this.report("stats");
  }

  // Copy `count` queued samples into out[at…]; the caller checked they are there.
  take(out, at, count) {
    while (count > 0) {
      const chunk = this.queue[0];
      const n = Math.min(count, chunk.length - this.head);
      out.set(chunk.subarray(this.head, this.head + n), at);
      at += n;
      count -= n;
      this.head += n;
      this.queued -= n;
      if (this.head === chunk.length) {
        this.queue.shift();
        this.head = 0;
      }
    }
  }

  report(type) {
    this.sinceStats = 0;
    this.port.postMessage({ type, played: this.played, heard: this.heard, queued: this.queued, drains: this.drains });
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    const size = out.length;
    let written = 0;
    if (this.tail) {
      written = Math.min(size, this.tail.length);
      out.set(this.tail.subarray(0, written));
      this.tail = written === this.tail.length ? null : this.tail.subarray(written);
    }
    if (this.state === "buffering") {
      this.waited += size;
      if (this.queued >= this.prebuffer || this.waited >= this.prebuffer) {
        this.state = "playing";
        this.fadeIn = this.fadeLen;
        this.report("playing");
      }
    }
    if (this.state === "playing" && this.held && this.queued < size - written) {
      // About to run dry: what the resampler holds back for look-ahead is the end of the audio so far.
      const tail = new Float32Array(this.resampler.maxOutput(0));
      const n = this.resampler.drain(tail);
      if (n > 0) this.pushChunk(tail.subarray(0, n));
      this.held = false;
    }
    if (this.state === "playing" && written < size) {
      const n = Math.min(size - written, this.queued);
      this.take(out, written, n);
      if (this.fadeIn > 0) {
        const len = Math.min(this.fadeIn, n);
        const done = this.fadeLen - this.fadeIn;
        for (let i = 0; i < len; i++) out[written + i] *= (done + i + 1) / this.fadeLen;
        this.fadeIn -= len;
      }
      this.played += n;
      written += n;
      if (this.queued === 0) {
        // Dry: fade what this quantum got, then wait for the buffer to prime again.
        const len = Math.min(this.fadeLen, n);
        for (let i = 0; i < len; i++) out[written - len + i] *= 1 - (i + 1) / len;
        if (written < size) this.drains += 1;
        this.state = "idle";
        this.report("drained");
      }
    }
    if (written < size) out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (this.state !== "idle") {
      this.sinceStats += size;
      if (this.sinceStats >= this.statsEvery) this.report("stats");
    }
    return true;
  }
}

registerProcessor("roomkit-playback", PlaybackProcessor);
