/**
 * The one place the runner starts external processes. Each tool runs in its own process group so a
 * timeout or an abort stops it and every worker it forked (pg_dump -j, pg_restore -j); its output is
 * streamed line by line (never buffered whole), redacted, and only the last lines are kept for errors.
 */
import { spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { redact } from '../report/log';

export interface RunToolOptions {
  /** Program to run (a path, or a name found on PATH of `env`). */
  readonly cmd: string;
  readonly args: readonly string[];
  /** The child's whole environment (not merged with process.env). */
  readonly env: NodeJS.ProcessEnv;
  /** @default - no timeout */
  readonly timeoutMs?: number;
  /** Aborting stops the tool's process group. */
  readonly signal?: AbortSignal;
  /** Called with each stderr line, already redacted. */
  readonly onStderrLine?: (line: string) => void;
  /** Called with each stdout line, already redacted. */
  readonly onStdoutLine?: (line: string) => void;
  readonly cwd?: string;
  /** Values removed from every captured or forwarded line. @default [] */
  readonly secrets?: readonly string[];
  /** Phase name carried by timeout errors. @default - the command's base name */
  readonly phase?: string;
  /** How many stderr lines are kept for error messages. @default 30 */
  readonly tailLines?: number;
  /** Time between SIGTERM and SIGKILL when stopping the group. @default 5000 */
  readonly killGraceMs?: number;
}

export interface ToolResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly durationMs: number;
  /** The last stderr lines (redacted). */
  readonly stderrTail: readonly string[];
}

/** Base of every error runTool throws; carries what is needed to report and classify the failure. */
export class ToolError extends Error {
  constructor(
    message: string,
    readonly tool: string,
    readonly stderrTail: readonly string[],
    readonly elapsedMs: number,
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The captured stderr tail as text (what classifyError and humanError read). */
  get stderr(): string { return this.stderrTail.join('\n'); }
}

/** The tool ran longer than its timeout and was stopped. */
export class ToolTimeoutError extends ToolError {
  constructor(tool: string, readonly phase: string, readonly timeoutMs: number, stderrTail: readonly string[], elapsedMs: number) {
    super(`${tool} (${phase}) timed out after ${formatSeconds(elapsedMs)} (limit ${formatSeconds(timeoutMs)})${tailSuffix(stderrTail)}`, tool, stderrTail, elapsedMs);
  }
}

/** The tool exited with a non-zero code or was killed by a signal it did not get from us. */
export class ToolFailedError extends ToolError {
  constructor(
    tool: string, readonly exitCode: number | null, readonly signal: NodeJS.Signals | null, stderrTail: readonly string[], elapsedMs: number,
    /** We ended it after it reported its error, because it had not exited (its workers still waiting). */
    killedAfterError = false,
  ) {
    const how = killedAfterError ? 'reported an error and was stopped (its workers had not exited)'
      : exitCode !== null ? `exited with code ${exitCode}` : `was killed by ${signal}`;
    super(`${tool} ${how}${tailSuffix(stderrTail)}`, tool, stderrTail, elapsedMs);
  }
}

/** The run was aborted (SIGTERM/SIGINT of the runner) and the tool was stopped. */
export class ToolAbortedError extends ToolError {
  constructor(tool: string, stderrTail: readonly string[], elapsedMs: number) {
    super(`${tool} was stopped: the run was interrupted`, tool, stderrTail, elapsedMs);
  }
}

/** The tool could not be started at all (not installed, not executable). */
export class ToolSpawnError extends ToolError {
  constructor(tool: string, cause: NodeJS.ErrnoException) {
    super(`cannot start ${tool}: ${cause.code === 'ENOENT' ? 'not found (set --bin-dir or PG_BIN, or put it on PATH)' : cause.message}`, tool, [], 0);
  }
}

function tailSuffix(tail: readonly string[]): string {
  const last = tail.filter((l) => l.trim() !== '').slice(-5);
  return last.length ? `:\n${last.join('\n')}` : '';
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
}

/** Longest line kept; a tool printing megabytes without a newline must not grow memory. */
const MAX_LINE = 8192;

/** Splits a byte stream into lines without holding more than one partial line. */
function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const emit = (line: string) => onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  return {
    push(chunk) {
      const text = partial + decoder.write(chunk);
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > MAX_LINE) partial = partial.slice(0, MAX_LINE);
      for (const l of lines) emit(l.length > MAX_LINE ? l.slice(0, MAX_LINE) : l);
    },
    end() {
      const rest = partial + decoder.end();
      partial = '';
      if (rest !== '') emit(rest);
    },
  };
}

/** The fatal error line of pg_dump, pg_dumpall and pg_restore (with --exit-on-error): the tool is about to exit. */
const FATAL_LINE = /^(pg_dump|pg_dumpall|pg_restore): error: /;
/** How long a tool may take to exit after its fatal error line before its process group is killed. */
const FATAL_EXIT_GRACE_MS = 3000;

/**
 * Runs a tool to completion. Resolves when it exits with code 0; otherwise rejects with a ToolTimeoutError,
 * ToolAbortedError, ToolFailedError or ToolSpawnError. Whatever happens, the tool's process group is gone
 * (or has been sent SIGKILL) before the promise settles.
 */
export function runTool(opts: RunToolOptions): Promise<ToolResult> {
  const tool = opts.cmd.split('/').pop() ?? opts.cmd;
  const phase = opts.phase ?? tool;
  const secrets = opts.secrets ?? [];
  const tailLines = opts.tailLines ?? 30;
  const grace = opts.killGraceMs ?? 5000;
  const started = Date.now();
  const tail: string[] = [];

  return new Promise<ToolResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new ToolAbortedError(tool, [], 0));
      return;
    }
    const child = spawn(opts.cmd, [...opts.args], {
      env: opts.env,
      cwd: opts.cwd,
      detached: true, // own process group: kill(-pid) reaches the tool's workers too
      stdio: ['ignore', 'pipe', 'pipe'],
    });

    let stopReason: 'timeout' | 'abort' | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let spawnError: NodeJS.ErrnoException | undefined;
    let settled = false;

    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try { process.kill(-child.pid, sig); } catch { /* group already gone */ }
    };
    const stop = (reason: 'timeout' | 'abort') => {
      if (stopReason || settled) return;
      stopReason = reason;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), grace);
    };

    const timer = opts.timeoutMs !== undefined ? setTimeout(() => stop('timeout'), opts.timeoutMs) : undefined;
    const onAbort = () => stop('abort');
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    // A tool that reported its fatal error is done: its leader then signals its parallel workers, and a worker that
    // was waiting may first try to cancel its query on a server the network no longer reaches, for another full
    // network timeout (PQcancel opens a new connection). The group gets a short grace to exit, then SIGKILL.
    let fatalTimer: NodeJS.Timeout | undefined;
    let killedAfterError = false;
    const exitsOnError = tool !== 'pg_restore' || opts.args.includes('--exit-on-error');
    const onFatal = () => {
      if (fatalTimer || stopReason || !exitsOnError) return;
      fatalTimer = setTimeout(() => { killedAfterError = true; killGroup('SIGKILL'); }, FATAL_EXIT_GRACE_MS);
    };
    const stderr = lineSplitter((raw) => {
      const line = redact(raw, secrets);
      tail.push(line);
      if (tail.length > tailLines) tail.shift();
      if (FATAL_LINE.test(line)) onFatal();
      opts.onStderrLine?.(line);
    });
    const stdout = lineSplitter((raw) => opts.onStdoutLine?.(redact(raw, secrets)));
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    child.stdout.on('data', (c: Buffer) => stdout.push(c));

    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
      if (child.pid === undefined && !settled) { // never started: there may be no 'close' to wait for
        settled = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        reject(new ToolSpawnError(tool, err));
      }
    });
    // 'close' fires after the process exited AND its pipes closed (workers holding them have exited too).
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      if (fatalTimer) clearTimeout(fatalTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      stderr.end();
      stdout.end();
      const elapsed = Date.now() - started;
      if (stopReason) {
        // Make sure no straggler of the group survives the grace period.
        killGroup('SIGKILL');
        if (killTimer) clearTimeout(killTimer);
      }
      if (spawnError) return reject(new ToolSpawnError(tool, spawnError));
      if (stopReason === 'timeout') return reject(new ToolTimeoutError(tool, phase, opts.timeoutMs ?? 0, [...tail], elapsed));
      if (stopReason === 'abort') return reject(new ToolAbortedError(tool, [...tail], elapsed));
      if (code !== 0) return reject(new ToolFailedError(tool, code, signal, [...tail], elapsed, killedAfterError));
      resolve({ exitCode: code, signal, durationMs: elapsed, stderrTail: [...tail] });
    });
  });
}

/**
 * Runs in-process work (queries through node-postgres) under the same rules as a tool: it fails with a
 * ToolTimeoutError after `timeoutMs` and with a ToolAbortedError when `signal` aborts. `work` gets a signal of
 * its own that fires in both cases, so it can close its connections; work that ignores it is abandoned.
 */
export async function withDeadline<T>(
  name: string,
  phase: string,
  opts: { readonly timeoutMs?: number; readonly signal?: AbortSignal },
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const started = Date.now();
  if (opts.signal?.aborted) throw new ToolAbortedError(name, [], 0);
  const inner = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stopped = new Promise<never>((_, reject) => {
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        inner.abort();
        reject(new ToolTimeoutError(name, phase, opts.timeoutMs ?? 0, [], Date.now() - started));
      }, opts.timeoutMs);
    }
    onAbort = () => { inner.abort(); reject(new ToolAbortedError(name, [], Date.now() - started)); };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
  const running = work(inner.signal);
  running.catch(() => undefined); // if abandoned, its late failure must not become an unhandled rejection
  try {
    return await Promise.race([running, stopped]);
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
  }
}
