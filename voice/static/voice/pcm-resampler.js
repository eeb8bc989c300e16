// Streaming sample-rate conversion for the voice page's AudioWorklets.
//
// A windowed-sinc (Kaiser) polyphase resampler: the microphone comes in at the
// AudioContext's rate (44.1/48 kHz) and goes to the server at 16 kHz; the
// agent's speech comes in at the server's announced rate and goes out at the
// AudioContext's. Going down, the kernel is also the anti-alias low-pass, so a
// 12 kHz hiss in the room does not fold into the speech band the recogniser
// hears. The browser's own resampler is used instead wherever it can be (an
// AudioContext created at 16 kHz); this one covers the browsers that cannot
// connect a microphone to a context at another rate.
//
// Rates are whole numbers of hertz, so their ratio is a fraction L/M: the
// output's position in the input advances by exactly L/M samples, kept as an
// integer numerator (no drift over an hour-long call). With M phases or fewer
// in the table each output uses its exact phase; rates whose M is larger use
// the nearest of MAX_PHASES phases (an error far below 16-bit noise).

const MAX_PHASES = 1024;

function besselI0(x) {
  // Power series of the modified Bessel function of the first kind, order 0 (Kaiser window).
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 64; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-12) break;
  }
  return sum;
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

export class StreamResampler {
  /**
   * @param {number} inRate input sample rate (Hz)
   * @param {number} outRate output sample rate (Hz)
   * @param {{zeroCrossings?: number, rolloff?: number, beta?: number}} [options]
   *   zeroCrossings: half the kernel's length in zero crossings of the lower rate's sinc (sharpness);
   *   rolloff: the cut-off as a fraction of the lower rate's Nyquist frequency;
   *   beta: the Kaiser window's shape (stop-band depth).
   */
  constructor(inRate, outRate, { zeroCrossings = 24, rolloff = 0.9, beta = 8.6 } = {}) {
    inRate = Math.round(inRate);
    outRate = Math.round(outRate);
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`bad sample rates ${inRate} → ${outRate}`);
    this.inRate = inRate;
    this.outRate = outRate;
    this.passthrough = inRate === outRate;
    if (this.passthrough) return;

    const g = gcd(inRate, outRate);
    this.step = inRate / g; // input samples per output, numerator
    this.den = outRate / g; // … denominator
    this.phases = Math.min(this.den, MAX_PHASES);
    const scale = Math.min(1, outRate / inRate); // < 1 when going down: widen the kernel, lower the cut-off
    const fc = rolloff * scale;
    const halfWidth = zeroCrossings / scale; // in input samples
    this.half = Math.ceil(halfWidth);
    this.taps = 2 * this.half;
    const i0Beta = besselI0(beta);
    // table[p * taps + i] weighs input sample (base - half + 1 + i) for an output at base + p/phases.
    this.table = new Float32Array(this.phases * this.taps);
    for (let p = 0; p < this.phases; p++) {
      const frac = p / this.phases;
      let sum = 0;
      for (let i = 0; i < this.taps; i++) {
        const u = frac + this.half - 1 - i; // distance from the output instant to that input sample
        let h = 0;
        if (Math.abs(u) < halfWidth) {
          const x = fc * u;
          const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
          const r = u / halfWidth;
          h = fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0Beta);
        }
        this.table[p * this.taps + i] = h;
        sum += h;
      }
      // Unity gain at DC for every phase: no ripple from phase to phase.
      for (let i = 0; i < this.taps; i++) this.table[p * this.taps + i] /= sum;
    }
    // History: buf[k] is input sample (start + k). The call starts on silence.
    this.buf = new Float32Array(4096 + this.taps);
    this.start = -this.half;
    this.length = this.half;
    this.base = 0; // the next output's integer input position …
    this.frac = 0; // … and its fraction, frac / den
  }

  /** Forget the stream so far (a flushed utterance): the next input starts on silence. */
  reset() {
    if (this.passthrough) return;
    this.buf.fill(0, 0, this.half);
    this.start = -this.half;
    this.length = this.half;
    this.base = 0;
    this.frac = 0;
  }

  /**
   * End the stream: write the outputs still held back for look-ahead (the
   * last ~1 ms), as if silence followed, then reset().
   * @param {Float32Array} output at least maxOutput(0) long
   * @returns {number} how many samples were written
   */
  drain(output) {
    if (this.passthrough) return 0;
    const n = this.process(new Float32Array(this.half), output);
    this.reset();
    return n;
  }

  /** The most samples `process` can write for `inputLength` input samples. */
  maxOutput(inputLength) {
    if (this.passthrough) return inputLength;
    return Math.ceil(((inputLength + this.taps) * this.den) / this.step) + 1;
  }

  /**
   * Resample the next `input` samples of the stream into `output` (from index 0).
   * @param {Float32Array} input
   * @param {Float32Array} output at least maxOutput(input.length) long
   * @returns {number} how many samples were written
   */
  process(input, output) {
    if (this.passthrough) {
      output.set(input);
      return input.length;
    }
    this._append(input);
    const { buf, table, taps, half, step, den, phases } = this;
    const end = this.start + this.length; // one past the last input sample held
    let n = 0;
    // An output at base + frac needs inputs base-half+1 … base+half.
    while (this.base + half < end) {
      const p = phases === den ? this.frac : Math.floor((this.frac * phases) / den);
      const off = this.base - half + 1 - this.start;
      const row = p * taps;
      let acc = 0;
      for (let i = 0; i < taps; i++) acc += buf[off + i] * table[row + i];
      output[n++] = acc;
      this.frac += step;
      const whole = Math.floor(this.frac / den);
      this.base += whole;
      this.frac -= whole * den;
    }
    return n;
  }

  _append(input) {
    // Drop what no future output reaches, then copy the new samples in.
    const keepFrom = this.base - this.half + 1;
    const drop = Math.max(0, Math.min(this.length, keepFrom - this.start));
    if (drop > 0) {
      this.buf.copyWithin(0, drop, this.length);
      this.start += drop;
      this.length -= drop;
    }
    if (this.length + input.length > this.buf.length) {
      const bigger = new Float32Array(2 * (this.length + input.length));
      bigger.set(this.buf.subarray(0, this.length));
      this.buf = bigger;
    }
    this.buf.set(input, this.length);
    this.length += input.length;
  }
}
