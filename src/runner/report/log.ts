/**
 * Folder report/: what people and log collectors see: the logger (this file), progress lines with rate and
 * ETA, and the summary. Imports nothing else of the runner but online/'s fault record type; imported by all.
 *
 * The runner's logger: one line per event, as text for people or JSON for log collectors, to the given
 * stream and to `<logs>/migration.log`. Every line passes through secret redaction first, so a password
 * that ends up in an error message or a tool's output never reaches a log.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export type LogLevel = 'ok' | 'error' | 'warn' | 'info' | 'debug';
export type LogFormat = 'text' | 'json';

const ICONS: Record<LogLevel, string> = { ok: '✅', error: '❌', warn: '⚠️', info: 'ℹ️', debug: 'ℹ️' };

/** Where a line belongs: the database label and the phase (preflight, dump, restore, analyze, verify...). */
export interface LogContext {
  readonly database?: string;
  readonly phase?: string;
}

/** Extra structured fields; shown as JSON keys, and as `key=value` after the message in text. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export const REDACTED = '***';

/** Replaces every occurrence of each secret (and its URL-encoded form) with `***`. Longest first. */
export function redact(text: string, secrets: readonly string[]): string {
  if (secrets.length === 0 || text.length === 0) return text;
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

/** Normalizes a list of secret values: non-empty, with URL-encoded variants, longest first, no duplicates. */
export function secretVariants(values: Iterable<string | undefined>): string[] {
  const set = new Set<string>();
  for (const v of values) {
    if (!v) continue;
    set.add(v);
    const enc = encodeURIComponent(v);
    if (enc !== v) set.add(enc);
  }
  return [...set].sort((a, b) => b.length - a.length);
}

export interface LoggerOptions {
  /** @default 'text' */
  readonly format?: LogFormat;
  /** Show debug lines (commands, the tools' own output). @default false */
  readonly verbose?: boolean;
  /** @default process.stdout */
  readonly out?: NodeJS.WritableStream;
  /** Directory for `migration.log`; when it cannot be written the logger warns once and goes on. @default - no file */
  readonly logDir?: string;
  /** Secret values that must never appear in any line. */
  readonly secrets?: Iterable<string | undefined>;
  /** Clock, for tests. @default - the system clock */
  readonly now?: () => Date;
}

interface LoggerState {
  format: LogFormat;
  verbose: boolean;
  out: NodeJS.WritableStream;
  fd: number | undefined;
  secrets: string[];
  now: () => Date;
}

export class Logger {
  /** Creates a logger; opens `<logDir>/migration.log` for appending. */
  static create(opts: LoggerOptions = {}): Logger {
    const state: LoggerState = {
      format: opts.format ?? 'text',
      verbose: opts.verbose ?? false,
      out: opts.out ?? process.stdout,
      fd: undefined,
      secrets: secretVariants(opts.secrets ?? []),
      now: opts.now ?? (() => new Date()),
    };
    const logger = new Logger(state, {});
    if (opts.logDir) {
      try {
        mkdirSync(opts.logDir, { recursive: true });
        state.fd = openSync(join(opts.logDir, 'migration.log'), 'a', 0o600);
      } catch (err) {
        logger.warn(`cannot write ${join(opts.logDir, 'migration.log')} (${(err as Error).message}); logging to the console only`);
      }
    }
    return logger;
  }

  private constructor(private readonly state: LoggerState, readonly context: LogContext) {}

  get verbose(): boolean { return this.state.verbose; }
  get format(): LogFormat { return this.state.format; }
  /** The secret values this logger redacts (for other sinks, such as the summary). */
  get secrets(): readonly string[] { return this.state.secrets; }

  /** A logger whose lines carry this context (merged over the current one). Shares output and secrets. */
  child(context: LogContext): Logger {
    return new Logger(this.state, { ...this.context, ...context });
  }

  /** Adds secret values to redact from now on. */
  addSecrets(values: Iterable<string | undefined>): void {
    this.state.secrets = secretVariants([...this.state.secrets, ...values]);
  }

  redact(text: string): string { return redact(text, this.state.secrets); }

  ok(msg: string, fields?: LogFields): void { this.log('ok', msg, fields); }
  info(msg: string, fields?: LogFields): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: LogFields): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: LogFields): void { this.log('error', msg, fields); }
  /** Only written when verbose. */
  debug(msg: string, fields?: LogFields): void { if (this.state.verbose) this.log('debug', msg, fields); }

  log(level: LogLevel, msg: string, fields: LogFields = {}): void {
    // Redact the parts first (JSON escaping could hide a secret from a later pass), then the whole line.
    const clean: LogFields = {};
    for (const [k, v] of Object.entries(fields)) clean[k] = typeof v === 'string' ? this.redact(v) : v;
    const line = this.redact(this.render(level, this.redact(msg), clean)) + '\n';
    this.state.out.write(line);
    if (this.state.fd !== undefined) {
      try { writeSync(this.state.fd, line); } catch { /* a full log volume must not stop the migration */ }
    }
  }

  /** Writes text as is (after redaction), e.g. the summary table. */
  raw(text: string): void {
    const clean = this.redact(text);
    this.state.out.write(clean);
    if (this.state.fd !== undefined) {
      try { writeSync(this.state.fd, clean); } catch { /* see log() */ }
    }
  }

  /** Closes `migration.log`. Later lines go to the console only. */
  close(): void {
    if (this.state.fd !== undefined) {
      try { closeSync(this.state.fd); } catch { /* already closed */ }
      this.state.fd = undefined;
    }
  }

  private render(level: LogLevel, msg: string, fields: LogFields): string {
    const iso = this.state.now().toISOString();
    const { database, phase } = this.context;
    if (this.state.format === 'json') {
      // Machines read JSON lines: milliseconds, to time phases and join lines with other logs.
      const obj: Record<string, unknown> = { ts: iso, level, ...(database ? { database } : {}), ...(phase ? { phase } : {}), msg };
      for (const [k, v] of Object.entries(fields)) if (v !== undefined && !(k in obj)) obj[k] = v;
      return JSON.stringify(obj);
    }
    const parts = [iso.replace(/\.\d{3}Z$/, 'Z'), ICONS[level]];
    if (database) parts.push(`[${database}]`);
    if (phase) parts.push(`[${phase}]`);
    parts.push(msg);
    const extra = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`);
    return [...parts, ...extra].join(' ');
  }
}
