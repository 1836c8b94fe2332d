/**
 * `npm run bench [-- --scale 20 --tables 200 --jobs 2]`: times the ways of moving a database between two
 * throwaway PostgreSQL 15 servers on the same data, and prints one markdown table (also written as JSON to
 * bench/results/). See bench/README.md. Never part of `npm test`.
 *
 * Exit code: 0 every contender succeeded, 1 some contender failed (the table says which and why),
 * 2 the harness itself failed (bad arguments, a server or dataset that could not be set up).
 */
import { readFileSync, mkdirSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startPgServer, type PgServer } from '../test/support/pg-server';
import {
  buildContender, CONTENDER_IDS, KEYLESS_ACTIONS, type KeylessAction, PGBENCH_ONLY, RUNNER_SCRIPT, writePassFile, writeSecretsFile, type Contender, type ContenderContext, type ContenderId,
} from './contenders';
import { checkDestination, generateLopsided, generateManyTables, generatePgbench, recreateDatabase, type DatasetInfo } from './datasets';
import { parseLinkRate, startLinkedServers, type LinkInfo, type LinkSpec } from './link';
import { DirPeak, firstErrorLine, killGroup, runnerNodeProcess, runningGroups, runStep, type TreeMemory } from './measure';
import { cutoverWhenReady, OnlineLoad, onlineResult, removeLeftovers, type OnlineResult } from './online';
import { combineRuns, machineInfo, markdownTable, notes, onlineTable, writeResults, type ContenderResult, type StepReport } from './report';

const REPO_ROOT = resolve(__dirname, '..');
const DATASETS = ['pgbench', 'tables', 'lopsided'] as const;
/** Without --datasets: the two the earlier results have (lopsided is asked for by name). */
const DEFAULT_DATASETS: readonly DatasetId[] = ['pgbench', 'tables'];
type DatasetId = (typeof DATASETS)[number];

const USAGE = `npm run bench -- [options]

  --scale N          pgbench scale; also sizes the large tables of the many-tables dataset (default 20)
  --tables N         tables in the many-tables dataset (default 200)
  --jobs N           parallel jobs for pg_dump -j / pg_restore -j and the runner (default 2)
  --timeout S        seconds allowed per contender (default max(300, 30 × scale))
  --repeat N         run every contender N times, interleaved, and report the median (default 1)
  --datasets LIST    comma-separated: ${DATASETS.join(', ')} (default ${DEFAULT_DATASETS.join(',')}); lopsided: one events table
                     (SCALE × 50 000 rows, bigint key, jsonb payload) with most of the bytes, and five small tables
  --link RATE        servers each in a network namespace behind a veth link shaped with tc tbf at RATE on both ends
                     (e.g. 1gbit, 200mbit); the runner and the tools stay in the root namespace (default: loopback)
  --split-larger-than Q  runner-stream-split: migration.copy.splitTablesLargerThan (a quantity, e.g. 64Mi; default: a
                     quarter of the dataset's largest table, rounded up to a MiB, so that it goes in 4 parts)
  --contenders LIST  comma-separated: ${CONTENDER_IDS.join(', ')} (default all; online: pgbench dataset only, not with --link)
  --online-rate N    online: pgbench -R, transactions per second of the write load during the migration (default 200)
  --online-clients N online: pgbench -c (default 2)
  --online-hold S    online: seconds the runner replicates under the load once ready, before the cutover is requested (default 10)
  --online-verify V  online: counts or checksums (default counts)
  --online-keyless A online: pgbench_history (no primary key): replicaIdentityFull (REPLICA IDENTITY FULL set on the source,
                     replicated) or exclude (copied inside the write pause) (default replicaIdentityFull)
  --bin-dir DIR      PostgreSQL 15 binaries (default /usr/lib/postgresql/15/bin)
  --results-dir DIR  where the JSON goes (default bench/results)
  --runner-verbose   runner contenders get migration.verbose: true (each table's and part's COPY time in their log; see --keep)
  --keep             keep the temporary directory (outputs of every contender) and print its path
`;

/** Same settings for both servers and every contender: fast and unsafe, as a benchmark box may be. */
const SERVER_SETTINGS: Record<string, string> = {
  shared_buffers: '1GB',
  maintenance_work_mem: '512MB',
  work_mem: '64MB',
  max_wal_size: '8GB',
  checkpoint_timeout: '30min',
  autovacuum: 'off',
  max_connections: '100',
};

/** The source's extra settings when the online contender runs: logical decoding for its replication slot. */
const ONLINE_SOURCE_SETTINGS: Record<string, string> = { wal_level: 'logical' };

interface Options {
  scale: number;
  tables: number;
  jobs: number;
  timeoutSeconds: number;
  repeat: number;
  datasets: DatasetId[];
  contenders: ContenderId[];
  binDir: string;
  resultsDir: string;
  keep: boolean;
  online: ContenderContext['online'];
  link?: LinkSpec;
  splitLargerThan?: string;
  runnerVerbose: boolean;
}

class UsageError extends Error {}

function parseOptions(argv: string[]): Options | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        scale: { type: 'string' }, tables: { type: 'string' }, jobs: { type: 'string' }, timeout: { type: 'string' }, repeat: { type: 'string' },
        datasets: { type: 'string' }, contenders: { type: 'string' }, 'bin-dir': { type: 'string' },
        'results-dir': { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
        'online-rate': { type: 'string' }, 'online-clients': { type: 'string' }, 'online-hold': { type: 'string' }, 'online-verify': { type: 'string' },
        'online-keyless': { type: 'string' }, link: { type: 'string' }, 'split-larger-than': { type: 'string' }, 'runner-verbose': { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return undefined;
  const int = (name: string, v: string | undefined, def: number, min: number, max: number) => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max} (got "${v}")`);
    return n;
  };
  const list = <T extends string>(name: string, v: string | undefined, all: readonly T[]): T[] => {
    if (v === undefined) return [...all];
    const items = v.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = items.filter((i) => !all.includes(i as T));
    if (bad.length || items.length === 0) throw new UsageError(`--${name}: unknown ${bad.join(', ') || '(empty)'} (choose from ${all.join(', ')})`);
    return all.filter((a) => items.includes(a));
  };
  const scale = int('scale', values.scale, 20, 1, 10_000);
  const onlineVerify = values['online-verify'] ?? 'counts';
  if (onlineVerify !== 'counts' && onlineVerify !== 'checksums') throw new UsageError(`--online-verify must be counts or checksums (got "${onlineVerify}")`);
  const link = values.link === undefined || values.link === 'loopback' ? undefined : parseLinkRate(values.link);
  if (values.link !== undefined && values.link !== 'loopback' && !link) throw new UsageError(`--link must be a rate such as 1gbit or 200mbit (got "${values.link}")`);
  const split = values['split-larger-than'];
  if (split !== undefined && !/^\d+(\.\d+)?(Ki|Mi|Gi|k|M|G)?$/.test(split)) throw new UsageError(`--split-larger-than must be a quantity such as 64Mi (got "${split}")`);
  if (link && values.contenders !== undefined && values.contenders.split(',').map((c) => c.trim()).includes('online')) {
    throw new UsageError('--link: the online contender cannot run (the destination\'s subscription would have to reach the source, and the namespaces reach only the root namespace)');
  }
  const keyless = values['online-keyless'] ?? 'replicaIdentityFull';
  if (!KEYLESS_ACTIONS.includes(keyless as KeylessAction)) throw new UsageError(`--online-keyless must be ${KEYLESS_ACTIONS.join(' or ')} (got "${keyless}")`);
  return {
    scale,
    tables: int('tables', values.tables, 200, 3, 2000),
    jobs: int('jobs', values.jobs, 2, 1, 64),
    timeoutSeconds: int('timeout', values.timeout, Math.max(300, 30 * scale), 1, 7 * 24 * 3600),
    repeat: int('repeat', values.repeat, 1, 1, 100),
    datasets: values.datasets === undefined ? [...DEFAULT_DATASETS] : list('datasets', values.datasets, DATASETS),
    contenders: list('contenders', values.contenders, CONTENDER_IDS).filter((c) => !(link && c === 'online' && values.contenders === undefined)),
    binDir: resolve(values['bin-dir'] ?? process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'),
    resultsDir: resolve(values['results-dir'] ?? join(REPO_ROOT, 'bench', 'results')),
    keep: values.keep ?? false,
    link,
    splitLargerThan: split,
    runnerVerbose: values['runner-verbose'] ?? false,
    online: {
      rate: int('online-rate', values['online-rate'], 200, 1, 100_000),
      clients: int('online-clients', values['online-clients'], 2, 1, 50),
      holdSeconds: int('online-hold', values['online-hold'], 10, 0, 3600),
      verify: onlineVerify,
      keyless: keyless as KeylessAction,
    },
  };
}

/** Everything to undo, newest first; runs once, whether the run ends, fails or is interrupted. */
class Cleanup {
  private readonly tasks: Array<{ what: string; run: () => Promise<void> | void }> = [];
  private running?: Promise<void>;

  add(what: string, run: () => Promise<void> | void): void {
    this.tasks.push({ what, run });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (const pid of runningGroups) killGroup(pid, 'SIGKILL');
      for (const t of this.tasks.reverse()) {
        try {
          await Promise.race([t.run(), new Promise((r) => setTimeout(r, 30_000).unref())]);
        } catch (err) {
          process.stderr.write(`bench: cleanup of ${t.what} failed: ${(err as Error).message}\n`);
        }
      }
    })();
    return this.running;
  }
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

function readSummary(workDir: string): { ok?: boolean; databases?: Array<Record<string, unknown>> } | undefined {
  const file = join(workDir, 'logs', 'summary.json');
  if (!existsSync(file)) return undefined;
  try { return JSON.parse(readFileSync(file, 'utf8')); } catch { return undefined; }
}

function tail(file: string, n: number): string[] {
  try { return readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).slice(-n); } catch { return []; }
}

async function runContender(
  c: Contender, dataset: DatasetInfo, ctx: ContenderContext,
): Promise<ContenderResult> {
  const logFile = join(ctx.dir, 'output.log');
  const dirPeak = c.dumpDir ? new DirPeak(c.dumpDir, 200) : undefined;
  const deadline = Date.now() + ctx.timeoutSeconds * 1000;
  const steps: StepReport[] = [];
  let failure: string | undefined;
  let runnerPeakKiB: number | undefined;
  let treePeakKiB: number | undefined;
  let timedOut = false;
  let runnerProcess: string | undefined;
  // Online: the write load starts (and settles) before the clock; the fence at cutover ends it.
  const load = c.online ? new OnlineLoad(ctx.source, ctx.database, ctx.binDir, c.online) : undefined;
  await load?.start(3000);
  let memory: TreeMemory | undefined;
  let cutover: Promise<number | undefined> | undefined;
  dirPeak?.start();
  const startedMs = Date.now();
  const started = process.hrtime.bigint();
  for (const step of c.steps) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) { failure = `timed out after ${ctx.timeoutSeconds} s`; break; }
    const running = runStep(step.cmd, step.args, {
      env: c.env, cwd: ctx.repoRoot, logFile, timeoutMs: remaining, memoryPollMs: c.kind === 'runner' ? 75 : undefined,
      rssSeriesOf: c.online ? RUNNER_SCRIPT : undefined,
    });
    if (c.online) cutover = cutoverWhenReady(c.online, logFile, running);
    const res = await running;
    memory = res.memory;
    steps.push({ display: step.display, seconds: res.seconds, exitCode: res.exitCode, signal: res.signal, timedOut: res.timedOut });
    if (c.kind === 'runner') {
      const proc = runnerNodeProcess(res.memory, RUNNER_SCRIPT);
      runnerPeakKiB = proc?.peakKiB;
      runnerProcess = proc ? `pid ${proc.pid}: ${proc.cmdline.slice(0, 200)}` : undefined;
      treePeakKiB = res.memory?.treePeakSumKiB;
    }
    if (res.timedOut) { timedOut = true; failure = `timed out after ${ctx.timeoutSeconds} s (limit per contender; --timeout)`; break; }
    if (res.exitCode !== 0) {
      const tool = step.cmd.split('/').pop();
      failure = `${tool} exited ${res.exitCode ?? res.signal}: ${firstErrorLine(readFileSync(logFile, 'utf8')) ?? 'no output'}`;
      break;
    }
  }
  const wallSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const peakDumpBytes = await dirPeak?.stop();
  const cutoverExitCode = await cutover;
  const loadReport = await load?.stop();

  let phases: Record<string, number | undefined> | undefined;
  let online: OnlineResult | undefined;
  if (c.kind === 'runner' && c.workDir) {
    const summary = readSummary(c.workDir);
    const db = summary?.databases?.[0];
    if (c.online && loadReport) {
      online = await onlineResult({ settings: c.online, startedMs, summaryDb: db, memory, load: loadReport, cutoverExitCode });
    }
    if (db) {
      const all: Record<string, unknown> = {
        dump: db.dumpSeconds, restore: db.restoreSeconds, stream: db.streamSeconds, analyze: db.analyzeSeconds, verify: db.verifySeconds,
      };
      const known = Object.entries(all).filter((e): e is [string, number] => typeof e[1] === 'number');
      phases = known.length ? Object.fromEntries(known) : undefined;
      // The runner's own account of a failure is the most precise first error line.
      if (timedOut) {
        if (db.phase) failure = `${failure} during ${String(db.phase)}`;
      } else if (typeof db.error === 'string' && (failure || db.status !== 'migrated')) {
        failure = `${db.phase ? `${String(db.phase)}: ` : ''}${db.error.split('\n')[0]}`;
      } else if (!failure && db.status !== 'migrated') {
        failure = `runner reported status ${String(db.status)}`;
      }
    } else if (!failure) {
      failure = 'runner exited 0 but wrote no logs/summary.json';
    }
  }
  if (!failure && c.online && !loadReport?.endedByFence) failure = 'the write load was not ended by the cutover\'s fence';
  if (!failure) {
    const problem = await checkDestination(ctx.destination, dataset.database, dataset);
    if (problem) failure = `wrong result: ${problem}`;
  }
  if (failure && c.online) await removeLeftovers(ctx.source, ctx.destination, ctx.database);
  return {
    dataset: dataset.name,
    contender: c.id,
    label: c.label,
    kind: c.kind,
    ok: !failure,
    status: failure ? `failed: ${failure}` : 'ok',
    wallSeconds,
    runnerPeakRssMiB: runnerPeakKiB === undefined ? undefined : runnerPeakKiB / 1024,
    runnerProcess,
    runnerTreePeakRssMiB: treePeakKiB === undefined ? undefined : treePeakKiB / 1024,
    peakDumpBytes,
    steps,
    phases,
    overheadSeconds: phases && Object.keys(phases).length
      ? wallSeconds - Object.values(phases).reduce<number>((a, b) => a + (b ?? 0), 0) : undefined,
    outputTail: failure ? tail(logFile, 20) : undefined,
    online,
  };
}

async function main(argv: string[]): Promise<number> {
  let opts: Options | undefined;
  try {
    opts = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (!opts) {
    process.stdout.write(USAGE);
    return 0;
  }
  for (const tool of ['pg_dump', 'pg_restore', 'psql', 'pgbench']) {
    if (!existsSync(join(opts.binDir, tool))) {
      process.stderr.write(`bench: ${join(opts.binDir, tool)} not found (--bin-dir)\n`);
      return 2;
    }
  }

  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    log(`${signal}: stopping, removing the servers and temporary files (again to quit at once)`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const startedAt = new Date();
  const loadAtStart = loadavg()[0];
  const results: ContenderResult[] = [];
  const datasets: DatasetInfo[] = [];
  try {
    const tmp = mkdtempSync(join(tmpdir(), 'dbm-bench-'));
    cleanup.add(`temporary directory ${tmp}`, () => {
      if (opts.keep) log(`kept ${tmp}`); else rmSync(tmp, { recursive: true, force: true });
    });

    const withOnline = opts.contenders.includes('online') && opts.datasets.includes('pgbench');
    const sourceSettings = withOnline ? { ...SERVER_SETTINGS, ...ONLINE_SOURCE_SETTINGS } : SERVER_SETTINGS;
    log(`starting source and destination servers (${Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k}=${v}`).join(', ')}, fsync off`
      + `${withOnline ? '; source: wal_level=logical' : ''})`);
    let source: PgServer, destination: PgServer;
    let link: LinkInfo | undefined;
    if (opts.link) {
      log(`link ${opts.link.rate}: source and destination each in a network namespace, veth shaped with tc tbf on both ends `
        + `(burst ${opts.link.burstBytes} B, latency ${opts.link.latencyMs} ms)`);
      ({ source, destination, info: link } = await startLinkedServers(opts.link, { source: sourceSettings, destination: SERVER_SETTINGS },
        (what, destroy) => cleanup.add(what, destroy)));
      for (const q of link.qdiscs) log(`  ${q}`);
    } else {
      const started = await Promise.allSettled([
        startPgServer({ name: 'bench-src', settings: sourceSettings }),
        startPgServer({ name: 'bench-dst', settings: SERVER_SETTINGS }),
      ]);
      for (const s of started) if (s.status === 'fulfilled') cleanup.add(`server on port ${s.value.port}`, () => s.value.destroy());
      const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw new Error(`cannot start a server: ${(failed.reason as Error).message}`);
      [source, destination] = started.map((s) => (s as PromiseFulfilledResult<PgServer>).value);
    }
    const linkLabel = link ? `${link.rate} (netns, tc tbf)` : 'loopback';

    const passFile = join(tmp, 'pgpass');
    const secretsFile = join(tmp, 'secrets.yaml');
    writePassFile(passFile, [source, destination]);
    writeSecretsFile(secretsFile, source, destination);
    const [{ v: serverVersion }] = await source.query<{ v: string }>('SELECT version() AS v');
    // At the start: the runner's code (git commit, dirty or not) is what the contenders run.
    const machine = machineInfo(opts.binDir, serverVersion, REPO_ROOT, loadAtStart);

    for (const datasetId of opts.datasets) {
      if (interrupted) break;
      log(`dataset ${datasetId}: generating`);
      const timeoutMs = opts.timeoutSeconds * 2000;
      const info = datasetId === 'pgbench'
        ? await generatePgbench(source, { scale: opts.scale, binDir: opts.binDir, workDir: tmp, timeoutMs })
        : datasetId === 'tables'
          ? await generateManyTables(source, { tables: opts.tables, scale: opts.scale, timeoutMs })
          : await generateLopsided(source, { scale: opts.scale, timeoutMs });
      datasets.push(info);
      log(`dataset ${datasetId}: ${(info.sourceBytes / 2 ** 20).toFixed(1)} MiB, ${info.tables} tables, largest ${info.largestTable} `
        + `${info.largestRows} rows (${info.generateSeconds.toFixed(1)} s)`);

      // Repetitions interleave the contenders (a, b, c, a, b, c, ...) so a noisy minute does not fall on one of them.
      const runsOf = new Map<ContenderId, ContenderResult[]>();
      for (let rep = 1; rep <= opts.repeat && !interrupted; rep++) {
        for (const id of opts.contenders) {
          if (interrupted) break;
          if (PGBENCH_ONLY.includes(id) && datasetId !== 'pgbench') continue;
          const dir = join(tmp, `${datasetId}-${id}${opts.repeat > 1 ? `-${rep}` : ''}`);
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          await recreateDatabase(destination, info.database);
          await destination.query('CHECKPOINT');
          const ctx: ContenderContext = {
            source, destination, database: info.database, jobs: opts.jobs, binDir: opts.binDir, dir, passFile, secretsFile,
            repoRoot: REPO_ROOT, timeoutSeconds: opts.timeoutSeconds, online: opts.online,
            runnerVerbose: opts.runnerVerbose,
            splitLargerThan: opts.splitLargerThan ?? `${Math.ceil(info.largestTableBytes / 4 / 2 ** 20)}Mi`,
          };
          const contender = buildContender(id, ctx);
          const which = opts.repeat > 1 ? ` (run ${rep}/${opts.repeat})` : '';
          log(`dataset ${datasetId}: ${contender.label}${which} ...`);
          const r = { ...await runContender(contender, info, ctx), link: linkLabel };
          if (interrupted) break;
          log(`dataset ${datasetId}: ${contender.label}${which}: ${r.wallSeconds?.toFixed(1)} s, ${r.status}`);
          runsOf.set(id, [...(runsOf.get(id) ?? []), r]);
          if (!opts.keep) rmSync(dir, { recursive: true, force: true });
        }
      }
      const forDataset = opts.contenders.filter((id) => runsOf.has(id)).map((id) => combineRuns(runsOf.get(id)!));
      const tuned = forDataset.find((r) => r.contender === 'tuned' && r.ok);
      // Online's wall time includes the hold under load before the cutover: not comparable to a copy's.
      for (const r of forDataset) if (tuned && r.ok && r.wallSeconds !== undefined && !r.online) r.ratioToTuned = r.wallSeconds / tuned.wallSeconds!;
      results.push(...forDataset);
    }

    // Interrupted: the signal handler is removing everything; a partial run writes no results.
    if (interrupted) return 130;
    const online = onlineTable(results, opts.scale);
    const table = online ? `${markdownTable(results)}\n\n${online}` : markdownTable(results);
    const noteLines = [
      ...notes(datasets, opts.jobs, results),
      link
        ? `- link: ${link.rate}; source ${link.source.address} and destination ${link.destination.address} each in a network namespace of `
          + `their own behind a veth pair with tc tbf (rate ${link.rate}, burst ${link.burstBytes} B, latency ${link.latencyMs} ms) on both ends; `
          + 'the runner and pg_dump/pg_restore/psql run in the root namespace, so a byte from source to destination crosses two shaped links, '
          + 'and a dump written to disk and restored crosses each link once too'
        : '- link: loopback (both servers and every client on 127.0.0.1, no shaping)',
    ];
    process.stdout.write(`\n${table}\n\n${noteLines.join('\n')}\n`);
    const file = writeResults(opts.resultsDir, {
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      options: {
        scale: opts.scale, tables: opts.tables, jobs: opts.jobs, timeoutSeconds: opts.timeoutSeconds, repeat: opts.repeat,
        datasets: opts.datasets, contenders: opts.contenders, serverSettings: SERVER_SETTINGS,
        link: link ?? 'loopback', runnerVerbose: opts.runnerVerbose, splitLargerThan: opts.splitLargerThan ?? 'a quarter of the largest table',
        ...(withOnline ? { sourceServerSettings: sourceSettings, online: opts.online } : {}),
      },
      machine: { ...machine, loadAverage: { ...machine.loadAverage, end: loadavg()[0] } },
      datasets,
      results,
      markdown: table,
      notes: noteLines,
    }, startedAt);
    log(`results: ${file} (and latest.json)`);
    return results.every((r) => r.ok) ? 0 : 1;
  } catch (err) {
    if (interrupted) return 130;
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    if (results.length) process.stdout.write(`\npartial results:\n\n${markdownTable(results)}\n`);
    return 2;
  } finally {
    await cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 2;
});
