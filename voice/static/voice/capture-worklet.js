// The microphone's AudioWorklet: AudioContext-rate floats in, 20 ms frames of
// 16-bit little-endian mono PCM at 16 kHz out (640 bytes each, what
// /ws/voice/ takes), each posted to the page with its level for the meter.
//
// It runs on the audio rendering thread, so it allocates only the frame it
// hands over (transferred, not copied) and never blocks.
import { StreamResampler } from "./pcm-resampler.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.frameSamples = Math.round((this.targetRate * (opts.frameMs || 20)) / 1000);
    this.resampler = new StreamResampler(sampleRate, this.targetRate);
    this.mono = new Float32Array(128);
    this.scratch = new Float32Array(this.resampler.maxOutput(128));
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "stop") this.running = false;
    };
  }

  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true; // nothing connected (yet): keep the node alive
    const count = input[0].length;
    if (this.mono.length < count) {
      this.mono = new Float32Array(count);
      this.scratch = new Float32Array(this.resampler.maxOutput(count));
    }
    // Down-mix: a stereo microphone (rare) is averaged, as the server wants one channel.
    const mono = this.mono.subarray(0, count);
    if (input.length === 1) mono.set(input[0]);
    else {
      mono.fill(0);
      for (const ch of input) for (let i = 0; i < count; i++) mono[i] += ch[i] / input.length;
    }
    const n = this.resampler.process(mono, this.scratch);
    for (let i = 0; i < n; i++) {
      let s = this.scratch[i];
      s = s > 1 ? 1 : s < -1 ? -1 : s;
      this.sumSquares += s * s;
      this.frame[this.filled++] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
      if (this.filled === this.frameSamples) this.flush();
    }
    return true;
  }

  flush() {
    const rms = Math.sqrt(this.sumSquares / this.frameSamples);
    const pcm = this.frame.buffer;
    // Int16Array stores in the platform's byte order; every browser platform is little-endian.
    this.port.postMessage({ type: "frame", pcm, rms }, [pcm]);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
  }
}

registerProcessor("roomkit-capture", CaptureProcessor);
