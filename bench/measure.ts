/**
 * Measurement primitives for the benchmark: a bounded child process in its own process group (so a timeout
 * or Ctrl-C stops the whole tree), a /proc poller for the peak memory of a process tree, and a poller for
 * the peak size of a directory.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { directorySize } from '../src/runner/report/progress';

/** Process groups currently running, so a signal handler can stop them all. */
export const runningGroups = new Set<number>();

export function killGroup(pid: number, signal: NodeJS.Signals = 'SIGTERM'): void {
  try { process.kill(-pid, signal); } catch { /* already gone */ }
}

export interface StepResult {
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly seconds: number;
  /** Peak memory of the tree, when a monitor was attached. */
  readonly memory?: TreeMemory;
}

export interface StepOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** stdout and stderr are appended to this file. */
  readonly logFile: string;
  readonly timeoutMs: number;
  /** Poll /proc for the tree's memory every this many ms. @default - no polling */
  readonly memoryPollMs?: number;
  /**
   * With memoryPollMs: keep a time series of the resident set (VmRSS) of the processes whose command line contains
   * this string (the largest at each sample), to find the peak within a window (online mode's catch-up).
   * @default - no series
   */
  readonly rssSeriesOf?: string;
}

/** Runs a command in its own process group; on timeout the group gets SIGTERM, then SIGKILL after 5 s. */
export function runStep(cmd: string, args: readonly string[], opts: StepOptions): Promise<StepResult> {
  return new Promise((resolve, reject) => {
    const fd = openSync(opts.logFile, 'a', 0o600);
    const started = process.hrtime.bigint();
    let child;
    try {
      child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, detached: true, stdio: ['ignore', fd, fd] });
    } catch (err) {
      closeSync(fd);
      reject(err);
      return;
    }
    const pid = child.pid;
    if (pid === undefined) {
      closeSync(fd);
      child.once('error', reject);
      return;
    }
    runningGroups.add(pid);
    const monitor = opts.memoryPollMs ? new TreeMonitor(pid, opts.memoryPollMs, opts.rssSeriesOf) : undefined;
    monitor?.start();
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(pid, 'SIGTERM');
      killTimer = setTimeout(() => killGroup(pid, 'SIGKILL'), 5000);
    }, opts.timeoutMs);
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      const memory = monitor?.stop();
      // Leftover members of the group (a tool that outlived its parent) must not run into the next contender.
      killGroup(pid, 'SIGKILL');
      runningGroups.delete(pid);
      closeSync(fd);
      resolve({ exitCode, signal, timedOut, seconds, memory });
    };
    child.once('error', (err) => {
      clearTimeout(timer);
      monitor?.stop();
      runningGroups.delete(pid);
      closeSync(fd);
      reject(err);
    });
    child.once('exit', finish);
  });
}

export interface ProcPeak {
  readonly pid: number;
  readonly name: string;
  readonly cmdline: string;
  /** Depth below the spawned process (0 = the spawned process itself). */
  readonly depth: number;
  /** Peak resident set (VmHWM, else the largest VmRSS seen), KiB. */
  peakKiB: number;
}

export interface TreeMemory {
  /** Every process seen in the tree with its peak. */
  readonly processes: ProcPeak[];
  /** Largest sum of VmRSS over the whole tree at one sample (node + pg_dump/pg_restore workers), KiB. */
  readonly treePeakSumKiB: number;
  readonly samples: number;
  /** With rssSeriesOf: [epoch ms, VmRSS KiB] of the matching process at each sample where it ran. */
  readonly rssSeries?: ReadonlyArray<readonly [number, number]>;
}

/** The largest VmRSS of a series within [fromMs, toMs]; undefined when no sample falls in it. */
export function peakInWindow(series: TreeMemory['rssSeries'], fromMs: number, toMs: number): number | undefined {
  let peak: number | undefined;
  for (const [t, kib] of series ?? []) if (t >= fromMs && t <= toMs) peak = Math.max(peak ?? 0, kib);
  return peak;
}

function readStatus(pid: number): { name: string; hwm: number; rss: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k: string) => {
      const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const name = /^Name:\s+(.*)$/m.exec(text)?.[1] ?? '?';
    return { name, hwm: field('VmHWM'), rss: field('VmRSS') };
  } catch {
    return undefined;
  }
}

function parentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The command name may contain spaces and parentheses: the fields after the last ')' are fixed.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch { /* exited meanwhile */ }
  }
  return children;
}

/** Polls a process tree's memory: VmHWM per process (the kernel's own peak) and the tree's summed VmRSS. */
export class TreeMonitor {
  private readonly peaks = new Map<string, ProcPeak>();
  private treePeakSumKiB = 0;
  private samples = 0;
  private timer?: NodeJS.Timeout;
  private readonly series: Array<readonly [number, number]> = [];

  constructor(private readonly rootPid: number, private readonly intervalMs: number, private readonly seriesOf?: string) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  stop(): TreeMemory {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    return {
      processes: [...this.peaks.values()], treePeakSumKiB: this.treePeakSumKiB, samples: this.samples,
      ...(this.seriesOf ? { rssSeries: this.series } : {}),
    };
  }

  private sample(): void {
    this.samples++;
    const children = parentMap();
    let sum = 0;
    let seriesKiB: number | undefined;
    const queue: Array<[number, number]> = [[this.rootPid, 0]];
    while (queue.length) {
      const [pid, depth] = queue.shift()!;
      const st = readStatus(pid);
      if (st) {
        sum += st.rss;
        // Keyed by pid and command line: a forked child first looks like its parent, then exec()s (which resets VmHWM).
        let cmdline = '';
        try { cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim(); } catch { /* gone */ }
        const key = `${pid} ${st.name} ${cmdline}`;
        let p = this.peaks.get(key);
        if (!p) {
          p = { pid, name: st.name, cmdline, depth, peakKiB: 0 };
          this.peaks.set(key, p);
        }
        p.peakKiB = Math.max(p.peakKiB, st.hwm, st.rss);
        if (this.seriesOf && st.name.startsWith('node') && cmdline.includes(this.seriesOf)) seriesKiB = Math.max(seriesKiB ?? 0, st.rss);
      }
      for (const c of children.get(pid) ?? []) queue.push([c, depth + 1]);
    }
    this.treePeakSumKiB = Math.max(this.treePeakSumKiB, sum);
    if (seriesKiB !== undefined) this.series.push([Date.now(), seriesKiB]);
  }
}

/**
 * The runner's own node process in a tree started as `node bin/db-migration.js migrate ...`: the CLI starts the
 * runner bundle as a child node process (`node <work-dir>/load-runner.js --config ...`). Of the node processes
 * running the script, the one with the largest peak: a child the runner has forked but not yet exec'd into
 * pg_dump briefly looks the same, and is never larger.
 */
export function runnerNodeProcess(mem: TreeMemory | undefined, script: string): ProcPeak | undefined {
  const nodes = (mem?.processes ?? []).filter((p) => p.name.startsWith('node') && p.cmdline.includes(script))
    .filter((p) => !/\.bin\/tsx\b|tsx\/dist\/cli/.test(p.cmdline));
  return nodes.sort((a, b) => b.peakKiB - a.peakKiB)[0];
}

/** Size in bytes of the files under a directory (0 when it does not exist): the runner's own measure. */
export const dirBytes = directorySize;

/** Polls a directory's size every intervalMs (skipping a tick while a walk is still running); keeps the peak. */
export class DirPeak {
  private peak = 0;
  private busy = false;
  private timer?: NodeJS.Timeout;
  private last: Promise<void> = Promise.resolve();

  constructor(private readonly dir: string, private readonly intervalMs: number) {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.intervalMs);
  }

  /** Stops polling; takes one final sample so a dump still on disk at the end is counted. */
  async stop(): Promise<number> {
    if (this.timer) clearInterval(this.timer);
    await this.last;
    this.peak = Math.max(this.peak, await dirBytes(this.dir));
    return this.peak;
  }

  private tick(): void {
    if (this.busy) return;
    this.busy = true;
    this.last = dirBytes(this.dir).then((b) => { this.peak = Math.max(this.peak, b); }, () => undefined)
      .finally(() => { this.busy = false; });
  }
}

/** The line of a tool's output that best says why it failed: the first error-looking line, else the last line. */
export function firstErrorLine(text: string): string | undefined {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  const err = lines.find((l) => /❌|\berror\b|\bfatal\b|failed|ERROR:|FATAL:/i.test(l));
  return err ?? lines[lines.length - 1];
}
