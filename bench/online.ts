/**
 * The online contender's moving parts around the runner process: a pgbench write load at a fixed rate on the
 * source (started before the runner, ended by the cutover's fence), the operator's cutover command once the
 * runner has been ready for a while, and the timeline read back from the runner's JSON log: time to ready,
 * the write pause and its steps, and the runner's resident set during the copy and during catch-up.
 */
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { escapeIdentifier } from 'pg';
import { requestCutover } from '../src/runner/online/control';
import { startPgbench, type PgbenchLoad } from '../test/support/pgbench-load';
import type { PgServer } from '../test/support/pg-server';
import type { KeylessAction, OnlineSettings } from './contenders';
import { withClient } from './datasets';
import { peakInWindow, type TreeMemory } from './measure';

/** Seconds of each step inside the write pause, from the runner's log lines (fence to "cut over"). */
export interface PauseSteps {
  /** ALTER DATABASE ... read-only and ending the source's sessions (the writers). */
  readonly fence?: number;
  /** Until the destination has applied everything committed before the fence. */
  readonly appliedWait?: number;
  /** Sequences, large objects, unpublished tables (pgbench_history), materialized views. */
  readonly copyInside?: number;
  /** Sequences and the object inventory compared. */
  readonly verifyInside?: number;
  /** Dropping the slot, publication and subscription; the destination marked verified. */
  readonly finish?: number;
}

export interface OnlineResult {
  /** Seconds from the CLI's start to the runner's "caught up ... ready to cut over" line. */
  readonly readySeconds?: number;
  /** The runner's own account: initial copy (summary streamSeconds) + catch-up (catchUpSeconds). */
  readonly copySeconds?: number;
  readonly catchUpSeconds?: number;
  /** Seconds the harness let the runner replicate once ready, before requesting the cutover. */
  readonly holdSeconds: number;
  /** What was done with pgbench_history (no primary key): replicated (replicaIdentityFull) or copied inside the pause. */
  readonly keyless: KeylessAction;
  /** The runner's summary: fence to verified. */
  readonly writePauseSeconds?: number;
  readonly pauseSteps: PauseSteps;
  /** Full verification at consistent points before the fence (not in the pause). */
  readonly verifyBeforeFenceSeconds?: number;
  /**
   * The longest a table's writers waited for that verification's SHARE lock (the runner's "writers of a table
   * waited at most N ms"): outside the write pause, but writes do stall for it.
   */
  readonly writersWaitedSeconds?: number;
  /** Rows of the unpublished tables (pgbench_history) copied inside the pause. */
  readonly rowsCopiedInsidePause?: number;
  /** Largest sampled VmRSS of the runner process during the initial copy, and from its end to the fence (catch-up, replicating under the load, verification before the fence). */
  readonly copyPeakRssMiB?: number;
  readonly catchUpPeakRssMiB?: number;
  readonly load: LoadReport;
  /** The cutover command's exit code (0 succeeded, 1 failed, 2 no runner waiting); undefined when never requested. */
  readonly cutoverExitCode?: number;
}

export interface LoadReport {
  readonly rate: number;
  readonly clients: number;
  /** pgbench's "number of transactions actually processed". */
  readonly transactions?: number;
  /** Seconds from the load's start until pgbench ended (the fence ends its sessions). */
  readonly ranSeconds: number;
  /** Whether pgbench's clients were ended by the fence (read-only database or terminated connection). */
  readonly endedByFence: boolean;
}

export class OnlineLoad {
  private load?: PgbenchLoad;
  private startedMs = 0;
  private endedMs?: number;

  constructor(private readonly source: PgServer, private readonly database: string, private readonly binDir: string,
    private readonly settings: OnlineSettings) {}

  /**
   * Makes the source writable again (a fence from an earlier run), gives pgbench_history the replica identity the
   * runner is told it has (FULL for replicaIdentityFull, DEFAULT, i.e. none, for exclude), starts pgbench and lets it
   * settle for `settleMs`.
   */
  async start(settleMs: number): Promise<void> {
    await unfence(this.source, this.database);
    await withClient(this.source, this.database, (c) => c.query(
      `ALTER TABLE public.pgbench_history REPLICA IDENTITY ${this.settings.keyless === 'replicaIdentityFull' ? 'FULL' : 'DEFAULT'}`));
    this.startedMs = Date.now();
    this.load = startPgbench(this.source, this.database, this.binDir, { rate: this.settings.rate, clients: this.settings.clients });
    this.load.process.once('close', () => { this.endedMs = Date.now(); });
    await new Promise((r) => setTimeout(r, settleMs));
    if (this.load.process.exitCode !== null) throw new Error(`pgbench ended before the migration started: ${await this.load.stop()}`);
  }

  /** Stops pgbench if the fence has not; then lifts the fence so the next contender finds a writable source. */
  async stop(): Promise<LoadReport> {
    const output = this.load ? await this.load.stop() : '';
    await unfence(this.source, this.database);
    const processed = /number of transactions actually processed: (\d+)/.exec(output);
    return {
      rate: this.settings.rate,
      clients: this.settings.clients,
      transactions: processed ? Number(processed[1]) : undefined,
      ranSeconds: ((this.endedMs ?? Date.now()) - this.startedMs) / 1000,
      endedByFence: /read-only transaction|terminating connection/.test(output),
    };
  }
}

async function unfence(server: PgServer, database: string): Promise<void> {
  await server.query(`ALTER DATABASE ${escapeIdentifier(database)} RESET default_transaction_read_only`);
}

/**
 * Waits for the runner's heartbeat to say "ready", lets it replicate for holdSeconds, then requests the cutover
 * (as `db-migration cutover --work-dir` does) and follows it; its output goes to `logFile`. Resolves with the
 * command's exit code, or undefined when the runner ended first (`runnerEnded`).
 */
export async function cutoverWhenReady(settings: OnlineSettings, logFile: string, runnerEnded: Promise<unknown>): Promise<number | undefined> {
  let ended = false;
  void runnerEnded.finally(() => { ended = true; });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  while (!ended) {
    const beat = await readFile(join(settings.controlDir, 'heartbeat'), 'utf8').catch(() => '');
    if (beat.startsWith('ready ')) break;
    await sleep(100);
  }
  if (ended) return undefined;
  const holdUntil = Date.now() + settings.holdSeconds * 1000;
  while (!ended && Date.now() < holdUntil) await sleep(100);
  if (ended) return undefined;
  const out = createWriteStream(logFile, { flags: 'a', mode: 0o600 });
  try {
    return await requestCutover({ dir: settings.controlDir, out, pollMs: 100 });
  } finally {
    await new Promise((r) => out.end(r));
  }
}

interface LogLine { readonly ts: string; readonly msg: string; readonly phase?: string }

/** The runner's JSON log lines (logFormat: json); lines that are not JSON (a crash's stack) are skipped. */
async function readLog(file: string): Promise<LogLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const lines: LogLine[] = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l) as Partial<LogLine>;
      if (typeof o.ts === 'string' && typeof o.msg === 'string') lines.push(o as LogLine);
    } catch { /* not a log object */ }
  }
  return lines;
}

/** The online contender's figures: the runner's log, its summary, the memory series, the load and the cutover command. */
export async function onlineResult(opts: {
  settings: OnlineSettings;
  startedMs: number;
  summaryDb?: Record<string, unknown>;
  memory?: TreeMemory;
  load: LoadReport;
  cutoverExitCode?: number;
}): Promise<OnlineResult> {
  const lines = await readLog(opts.settings.logFile);
  const at = (starts: string) => {
    const l = lines.find((x) => x.msg.startsWith(starts));
    return l ? Date.parse(l.ts) : undefined;
  };
  const copyEnd = at('initial copy:');
  const ready = lines.find((x) => x.msg.startsWith('caught up:') && x.msg.includes('ready to cut over'));
  const readyMs = ready ? Date.parse(ready.ts) : undefined;
  const cutoverStart = at('cutting over (');
  const verifiedBefore = at('verified before the fence');
  const fenced = at('fence:');
  const applied = at('the destination has applied everything');
  const copied = at('copied inside the pause');
  const verifiedInside = at('verified inside the pause');
  const cutOver = at('cut over: write pause');
  const span = (a?: number, b?: number) => (a !== undefined && b !== undefined ? (b - a) / 1000 : undefined);
  const pauseStart = verifiedBefore ?? cutoverStart;
  const verifiedLine = lines.find((x) => x.msg.startsWith('verified before the fence'))?.msg;
  const writersWaitedMs = verifiedLine ? /writers of a table waited at most (\d+) ms/.exec(verifiedLine)?.[1] : undefined;
  const copiedLine = lines.find((x) => x.msg.startsWith('copied inside the pause'))?.msg;
  const rowsInside = copiedLine ? /unpublished tables \((\d+) rows\)/.exec(copiedLine)?.[1] : undefined;
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  const mib = (kib?: number) => (kib === undefined ? undefined : kib / 1024);
  const series = opts.memory?.rssSeries;
  return {
    readySeconds: readyMs === undefined ? undefined : (readyMs - opts.startedMs) / 1000,
    copySeconds: num(opts.summaryDb?.streamSeconds),
    catchUpSeconds: num(opts.summaryDb?.catchUpSeconds),
    holdSeconds: opts.settings.holdSeconds,
    keyless: opts.settings.keyless,
    writePauseSeconds: num(opts.summaryDb?.writePauseSeconds),
    pauseSteps: {
      fence: span(pauseStart, fenced),
      appliedWait: span(fenced, applied),
      copyInside: span(applied, copied),
      verifyInside: span(copied, verifiedInside),
      finish: span(verifiedInside, cutOver),
    },
    verifyBeforeFenceSeconds: span(cutoverStart, verifiedBefore),
    writersWaitedSeconds: writersWaitedMs === undefined ? undefined : Number(writersWaitedMs) / 1000,
    rowsCopiedInsidePause: rowsInside === undefined ? undefined : Number(rowsInside),
    copyPeakRssMiB: mib(copyEnd === undefined ? undefined : peakInWindow(series, opts.startedMs, copyEnd)),
    catchUpPeakRssMiB: mib(copyEnd === undefined ? undefined : peakInWindow(series, copyEnd, fenced ?? Date.now())),
    load: opts.load,
    cutoverExitCode: opts.cutoverExitCode,
  };
}

/**
 * After a failed online run: the replication objects it may have left (subscription on the destination, slot and
 * publication on the source), so the destination database can be dropped for the next contender.
 */
export async function removeLeftovers(source: PgServer, destination: PgServer, database: string): Promise<void> {
  await withClient(destination, database, async (c) => {
    const subs = await c.query<{ subname: string }>('SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())');
    for (const { subname } of subs.rows) {
      const s = escapeIdentifier(subname);
      await c.query(`ALTER SUBSCRIPTION ${s} DISABLE`);
      await c.query(`ALTER SUBSCRIPTION ${s} SET (slot_name = NONE)`);
      await c.query(`DROP SUBSCRIPTION ${s}`);
    }
  }).catch(() => undefined);
  await withClient(source, database, async (c) => {
    const pubs = await c.query<{ pubname: string }>('SELECT pubname FROM pg_publication');
    for (const { pubname } of pubs.rows) await c.query(`DROP PUBLICATION ${escapeIdentifier(pubname)}`);
    await c.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = current_database() AND NOT active');
  }).catch(() => undefined);
}
