/**
 * Retries of one phase: only failures classifyError calls transient are tried again, with a delay that
 * doubles each time (capped). Permanent failures, timeouts and interruptions fail at once, and say so.
 */
import { classifyError, type ErrorClass } from './errors';
import { ToolAbortedError, ToolTimeoutError } from './exec';
import type { Logger } from '../report/log';

export interface RetryPolicy {
  /** Total attempts, the first included. */
  readonly attempts: number;
  /** Delay before the second attempt, in seconds; doubles for each further one. */
  readonly delaySeconds: number;
  /** @default 300 - five minutes */
  readonly maxDelaySeconds?: number;
}

export interface RetryOptions extends RetryPolicy {
  /** Logger carrying the database and phase. */
  readonly logger: Logger;
  readonly database: string;
  readonly phase: string;
  /** Aborting stops the wait between attempts. */
  readonly signal?: AbortSignal;
  /** @default classifyError */
  readonly classify?: (err: unknown) => ErrorClass;
  /** Runs before attempts 2..n, e.g. to remove what the failed attempt left. Its failure ends the retries. */
  readonly beforeRetry?: (attempt: number) => Promise<void>;
  /** The setting that bounds the phase, named in timeout messages. @default - migration.timeouts.<phase> */
  readonly timeoutSetting?: string;
}

/** Why a phase failed for good: carries the database, the phase, how often it was tried and the last error. */
export class PhaseError extends Error {
  constructor(
    readonly database: string,
    readonly phase: string,
    readonly attempts: number,
    readonly transient: boolean,
    readonly reason: string,
    readonly cause: unknown,
    readonly interrupted: boolean,
    readonly timedOut: boolean,
  ) {
    super(`${database} ${phase}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'PhaseError';
  }
}

/** Seconds to wait before attempt `attempt` (2 = first retry): delay, doubling, capped. */
export function backoffSeconds(policy: RetryPolicy, attempt: number): number {
  const cap = policy.maxDelaySeconds ?? 300;
  return Math.min(cap, policy.delaySeconds * 2 ** Math.max(0, attempt - 2));
}

function isAbort(err: unknown, signal?: AbortSignal): boolean {
  return err instanceof ToolAbortedError || (signal?.aborted ?? false);
}

/** Runs `fn` until it succeeds, fails permanently, or runs out of attempts. Throws a PhaseError. */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const classify = opts.classify ?? classifyError;
  const attempts = Math.max(1, opts.attempts);
  const { logger } = opts;
  for (let attempt = 1; ; attempt++) {
    try {
      if (attempt > 1 && opts.beforeRetry) await opts.beforeRetry(attempt);
      return await fn(attempt);
    } catch (err) {
      const fail = (transient: boolean, reason: string) =>
        new PhaseError(opts.database, opts.phase, attempt, transient, reason, err, isAbort(err, opts.signal), err instanceof ToolTimeoutError);
      if (isAbort(err, opts.signal)) throw fail(false, 'interrupted');
      if (err instanceof ToolTimeoutError) {
        // The timeout is the phase's budget; spending it again would multiply the time the operator allowed.
        logger.error(`timed out after ${Math.round(err.elapsedMs / 1000)}s (not retried: raise ${opts.timeoutSetting ?? `migration.timeouts.${opts.phase}`} if it needs longer)`);
        throw fail(false, 'timeout');
      }
      const cls = classify(err);
      if (!cls.transient) {
        logger.error(`permanent failure (${cls.reason}) on attempt ${attempt}/${attempts}, not retrying`);
        throw fail(false, cls.reason);
      }
      if (attempt >= attempts) {
        logger.error(`gave up after ${attempt}/${attempts} attempts: ${cls.reason}`);
        throw fail(true, cls.reason);
      }
      const wait = backoffSeconds(opts, attempt + 1);
      logger.warn(`attempt ${attempt + 1}/${attempts} after ${cls.reason}, waiting ${wait}s`);
      await sleep(wait * 1000, opts.signal).catch(() => { throw fail(false, 'interrupted'); });
    }
  }
}

/** Resolves after `ms`, or rejects as soon as the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('aborted'));
    const onAbort = () => { clearTimeout(t); reject(new Error('aborted')); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
