/**
 * The benchmark's output: one markdown table on stdout, and the same results with machine information as
 * JSON (bench/results/<timestamp>.json and bench/results/latest.json) for comparisons over time.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import type { DatasetInfo } from './datasets';
import type { OnlineResult } from './online';

export interface StepReport {
  readonly display: string;
  readonly seconds: number;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly timedOut: boolean;
}

export interface ContenderResult {
  readonly dataset: string;
  readonly contender: string;
  readonly label: string;
  /** "loopback", or the shaped link's rate ("200mbit (netns, tc tbf)"; see link.ts). */
  readonly link?: string;
  readonly kind: 'hand' | 'runner';
  readonly ok: boolean;
  /** "ok", or "failed: <first error line>". */
  readonly status: string;
  /**
   * Seconds from the first step's start to the last step's end (failed runs: until they failed); with --repeat,
   * the median of the repetitions.
   */
  readonly wallSeconds?: number;
  /** Every repetition's wall seconds, in run order (--repeat). */
  readonly runs?: readonly number[];
  ratioToTuned?: number;
  /** Peak resident set (VmHWM) of the runner's node process. */
  readonly runnerPeakRssMiB?: number;
  /** Which process the peak RSS is of (pid and command line), to check the measurement. */
  readonly runnerProcess?: string;
  /** Peak of the summed resident sets of the runner's whole process tree (CLI, runner, pg_dump/pg_restore workers). */
  readonly runnerTreePeakRssMiB?: number;
  /** Peak apparent size of the dump directory; undefined when nothing goes to disk (the pipe). */
  readonly peakDumpBytes?: number;
  readonly steps: readonly StepReport[];
  /** The runner's own phase timings, from its logs/summary.json. */
  readonly phases?: Record<string, number | undefined>;
  /** Wall time outside those phases: CLI start-up and bundling, plan, pre-flight, clean-up. */
  readonly overheadSeconds?: number;
  /** The end of the runner's output, when it failed. */
  readonly outputTail?: readonly string[];
  /** The online contender: time to ready, write pause and its steps, memory during catch-up, the load. */
  readonly online?: OnlineResult;
  /** With --repeat: every repetition's online figures, in run order. */
  readonly onlineRuns?: readonly OnlineResult[];
}

export interface MachineInfo {
  readonly cores: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly pgDump: string;
  readonly server: string;
  readonly gitCommit?: string;
  readonly gitDirty?: boolean;
  /** 1-minute load average when the run started and when it ended: other work on the box skews the times. */
  readonly loadAverage: { readonly start?: number; readonly end: number };
}

export function machineInfo(binDir: string, serverVersion: string, repoRoot: string, loadAtStart?: number): MachineInfo {
  const sh = (cmd: string, args: string[]) => {
    try { return execFileSync(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(); } catch { return undefined; }
  };
  const status = sh('git', ['status', '--porcelain', '--untracked-files=no']);
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    node: process.version,
    pgDump: sh(join(binDir, 'pg_dump'), ['--version']) ?? 'unknown',
    server: serverVersion,
    gitCommit: sh('git', ['rev-parse', 'HEAD']),
    gitDirty: status === undefined ? undefined : status.length > 0,
    loadAverage: { start: loadAtStart, end: loadavg()[0] },
  };
}

const mib = (bytes: number) => bytes / 2 ** 20;
const fmt = (n: number | undefined, digits = 1) => (n === undefined ? '—' : n.toFixed(digits));
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function markdownTable(results: readonly ContenderResult[]): string {
  const repeated = results.some((r) => (r.runs?.length ?? 0) > 1);
  const head = `| dataset | link | contender | wall s${repeated ? ' (median; min–max)' : ''} | × tuned | runner peak RSS MiB | peak dump MiB | status |`;
  const sep = '|---|---|---|--:|--:|--:|--:|---|';
  const wall = (r: ContenderResult) => (r.runs && r.runs.length > 1
    ? `${fmt(r.wallSeconds)} (${fmt(Math.min(...r.runs))}–${fmt(Math.max(...r.runs))})` : fmt(r.wallSeconds));
  const rows = results.map((r) => `| ${cell(r.dataset)} | ${cell(r.link ?? 'loopback')} | ${cell(r.label)} | ${wall(r)} | ${r.ratioToTuned === undefined ? '—' : `${r.ratioToTuned.toFixed(2)}×`} | `
    + `${fmt(r.runnerPeakRssMiB)} | ${r.peakDumpBytes === undefined ? '—' : fmt(mib(r.peakDumpBytes))} | ${cell(truncate(r.status, 160))} |`);
  return [head, sep, ...rows].join('\n');
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/**
 * One row from the repetitions of a contender: the median wall time (and every run's), the highest peaks, the
 * first failure; the phase notes of the median run.
 */
export function combineRuns(runs: readonly ContenderResult[]): ContenderResult {
  if (runs.length === 1) return runs[0];
  const walls = runs.map((r) => r.wallSeconds).filter((w): w is number => w !== undefined);
  const sorted = [...walls].sort((a, b) => a - b);
  const median = sorted.length ? (sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2) : undefined;
  const closest = runs.reduce((best, r) => (median !== undefined && r.wallSeconds !== undefined
    && Math.abs(r.wallSeconds - median) < Math.abs((best.wallSeconds ?? Infinity) - median) ? r : best), runs[0]);
  const failed = runs.find((r) => !r.ok);
  const max = (xs: Array<number | undefined>) => {
    const ns = xs.filter((x): x is number => x !== undefined);
    return ns.length ? Math.max(...ns) : undefined;
  };
  return {
    ...closest,
    ok: !failed,
    status: failed ? failed.status : 'ok',
    wallSeconds: median,
    runs: walls,
    runnerPeakRssMiB: max(runs.map((r) => r.runnerPeakRssMiB)),
    runnerTreePeakRssMiB: max(runs.map((r) => r.runnerTreePeakRssMiB)),
    peakDumpBytes: max(runs.map((r) => r.peakDumpBytes)),
    outputTail: failed?.outputTail,
    ...(runs.some((r) => r.online) ? { onlineRuns: runs.flatMap((r) => (r.online ? [r.online] : [])) } : {}),
  };
}

/**
 * The online contender's figures, one row per run (every repetition shown, not a median: the write pause is the
 * number that matters and its spread is part of it). Undefined when the online contender did not run.
 */
export function onlineTable(results: readonly ContenderResult[], scale: number): string | undefined {
  const rows = results.filter((r) => r.online).flatMap((r) => (r.onlineRuns ?? [r.online!]).map((o, i, all) => ({ r, o, run: all.length > 1 ? `${i + 1}/${all.length}` : '1' })));
  if (rows.length === 0) return undefined;
  const head = '| scale | run | ready s (CLI start; copy + catch-up) | write pause s | fence | applied wait | copy inside | verify inside | finish | '
    + 'verify before fence s (writers waited max s) | runner RSS MiB: copy / catch-up / peak | load, txns | status |';
  const sep = '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|';
  const body = rows.map(({ r, o, run }) => {
    const p = o.pauseSteps;
    return `| ${scale} | ${run} | ${fmt(o.readySeconds)} (${fmt(o.copySeconds)} + ${fmt(o.catchUpSeconds)}) | ${fmt(o.writePauseSeconds, 2)} | `
      + `${fmt(p.fence, 2)} | ${fmt(p.appliedWait, 2)} | ${fmt(p.copyInside, 2)} | ${fmt(p.verifyInside, 2)} | ${fmt(p.finish, 2)} | `
      + `${fmt(o.verifyBeforeFenceSeconds)} (${fmt(o.writersWaitedSeconds, 2)}) | `
      + `${fmt(o.copyPeakRssMiB)} / ${fmt(o.catchUpPeakRssMiB)} / ${fmt(r.runnerPeakRssMiB)} | -R ${o.load.rate} -c ${o.load.clients}, `
      + `${o.load.transactions ?? '?'} | ${cell(truncate(r.status, 120))} |`;
  });
  return [head, sep, ...body].join('\n');
}

export function notes(datasets: readonly DatasetInfo[], jobs: number, results: readonly ContenderResult[] = []): string[] {
  const phaseNotes = results.filter((r) => r.phases && Object.keys(r.phases).length).map((r) => {
    const p = Object.entries(r.phases!).filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${fmt(v)}`).join(', ');
    return `- ${r.dataset} / ${r.label}: runner phases (s) ${p}; start-up + pre-flight + rest ${fmt(r.overheadSeconds)}; `
      + `whole tree peak RSS (node + pg tools) ${fmt(r.runnerTreePeakRssMiB)} MiB`;
  });
  const onlineNotes = results.filter((r) => r.online).map((r) => {
    const o = r.online!;
    return `- ${r.dataset} / online: source wal_level=logical; pgbench -R ${o.load.rate} -c ${o.load.clients} from 3 s before the runner until the fence `
      + `(${o.load.endedByFence ? 'ended by the fence' : 'NOT ended by the fence'}); cutover: manual, requested ${o.holdSeconds} s after "ready"; `
      + (o.keyless === 'exclude'
        ? `public.pgbench_history (no primary key) is tablesWithoutKey: exclude, so it is truncated and copied inside the pause (${o.rowsCopiedInsidePause ?? '?'} rows); `
        : 'public.pgbench_history (no primary key) has REPLICA IDENTITY FULL on the source and tablesWithoutKey: replicaIdentityFull, so it is replicated; ')
      + `full verification before the fence took ${fmt(o.verifyBeforeFenceSeconds)} s (not in the pause). `
      + 'Write pause = fence to verified (the runner\'s writePauseSeconds); its steps are the gaps between the runner\'s log lines. '
      + 'RSS copy / catch-up: largest VmRSS of the runner process sampled every 75 ms during the initial copy, and from its end to the fence; peak: VmHWM.';
  });
  return [
    ...phaseNotes,
    ...onlineNotes,
    ...datasets.map((d) => `- dataset ${d.name}: ${d.description}; source ${fmt(mib(d.sourceBytes))} MiB, ${d.tables} tables, `
      + `largest ${d.largestTable} (${d.largestRows} rows); generated in ${fmt(d.generateSeconds)} s`),
    `- N = ${jobs} jobs everywhere; hand dumps are uncompressed (-Z0) like the runner's default (dump.compression: 0).`,
    '- runner times are the whole CLI process: CLI start-up and runner bundling, pre-flight, dump, restore, ANALYZE and verification '
      + '(verify: counts = row counts, sequences, object inventory); the "verify: none" rows leave verification out. Hand runs do no ANALYZE.',
    '- × tuned: wall time over the tuned hand run on the same dataset. Peak dump MiB: apparent size of the dump directory, polled every 200 ms. '
      + 'Runner peak RSS: VmHWM of the runner\'s node process, polled every 75 ms.',
    '- every contender starts from a dropped and re-created empty destination database and is checked afterwards: same number of tables, '
      + 'same row count in the largest table as the source.',
  ];
}

export function writeResults(dir: string, doc: unknown, startedAt: Date): string {
  mkdirSync(dir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = join(dir, `${stamp}.json`);
  const text = `${JSON.stringify(doc, null, 2)}\n`;
  writeFileSync(file, text);
  writeFileSync(join(dir, 'latest.json'), text);
  return file;
}
