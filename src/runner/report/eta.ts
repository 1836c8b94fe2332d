/**
 * Rate and time-left estimates for progress lines. A sliding window of (time, amount done) samples gives the
 * current rate; the time left is what remains of the expected total at that rate. Totals are estimates (on-disk
 * table sizes, a database's size, a dump's table of contents), so while the work runs the share done stays below
 * 100%, and a total that the work has outgrown gives no time left rather than a wrong one.
 */

/** @default span of the rate window: 60 seconds */
export const RATE_WINDOW_MS = 60_000;

/** The current rate of a count that grows: over the last `windowMs`, from samples of (time, done). */
export class RateWindow {
  private samples: { t: number; done: number }[] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Records `done` at time `t` (ms); samples older than the last one are ignored. */
  add(done: number, t = Date.now()): void {
    const last = this.samples[this.samples.length - 1];
    if (last && t < last.t) return;
    if (last && t === last.t) { last.done = done; return; }
    this.samples.push({ t, done });
    // One sample at or before the window's start stays, so the rate spans the whole window even when samples are sparse.
    while (this.samples.length > 2 && this.samples[1].t <= t - this.windowMs) this.samples.shift();
  }

  /** Forgets every sample (a new phase, whose rate owes nothing to the last one). */
  reset(): void {
    this.samples = [];
  }

  /** Time of the latest sample (ms). @default - undefined before the first sample */
  get lastSampleAt(): number | undefined {
    return this.samples[this.samples.length - 1]?.t;
  }

  /** Units per second over the window; undefined until two samples span some time. */
  perSecond(): number | undefined {
    if (this.samples.length < 2) return undefined;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    return Math.max(0, (b.done - a.done) / ((b.t - a.t) / 1000));
  }
}

/** How far a piece of work is, and how long it should still take. */
export interface Estimate {
  readonly done: number;
  /** The expected total, never below `done`. @default - undefined: not known */
  readonly total: number | undefined;
  /** Current rate, units per second. @default - undefined: not measured yet */
  readonly perSecond: number | undefined;
  /** Whole percent done, at most 99 while the work runs (the total is an estimate). @default - undefined: no total */
  readonly percent: number | undefined;
  /** Seconds left at the current rate. @default - undefined: no rate, no total, or the total was outgrown */
  readonly etaSeconds: number | undefined;
}

/** The estimate of work `done` of about `expected` (0 or undefined: unknown) at `perSecond`. */
export function estimate(done: number, expected: number | undefined, perSecond: number | undefined): Estimate {
  const known = expected !== undefined && expected > 0;
  const total = known ? Math.max(expected, done) : undefined;
  const percent = total === undefined ? undefined : Math.min(99, Math.floor((done / total) * 100));
  const left = known ? expected - done : 0;
  const etaSeconds = left > 0 && perSecond !== undefined && perSecond > 0 ? Math.round(left / perSecond) : undefined;
  return { done, total, perSecond, percent, etaSeconds };
}
