/**
 * The contenders: what each runs, as a list of steps timed together. The destination database is dropped
 * and re-created empty before each (outside the timing). Hand runs authenticate through a password file
 * (PGPASSFILE, mode 600); the runner through a Secret manifest file (mode 600), as on a workstation.
 * Nothing secret is ever on a command line.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { RUNNER_LOADER_FILE } from '../src/chart/runner-loader';
import type { PgServer } from '../test/support/pg-server';

export type ContenderKind = 'hand' | 'runner';

export interface Step {
  readonly cmd: string;
  readonly args: readonly string[];
  /** For the report: how this step runs, without secrets. */
  readonly display: string;
}

export interface Contender {
  readonly id: string;
  readonly label: string;
  readonly kind: ContenderKind;
  /** The directory whose size is polled for the peak dump bytes; undefined when nothing is written (a pipe). */
  readonly dumpDir?: string;
  readonly steps: readonly Step[];
  readonly env: NodeJS.ProcessEnv;
  /** For runner contenders: where its logs/summary.json lands. */
  readonly workDir?: string;
  readonly mode?: 'dump' | 'stream' | 'online';
  readonly verify?: 'counts' | 'checksums' | 'none';
  /** Online mode: the write load on the source and when the cutover is requested (see run.ts, runOnline). */
  readonly online?: OnlineSettings;
}

/** How the online contender runs: a pgbench load at a fixed rate during the migration, a manual cutover. */
export interface OnlineSettings {
  /** pgbench -R: transactions per second, all clients together. */
  readonly rate: number;
  /** pgbench -c. */
  readonly clients: number;
  /** Seconds the runner stays ready (replicating under the load) before the harness requests the cutover. */
  readonly holdSeconds: number;
  /** public.pgbench_history: replicated with REPLICA IDENTITY FULL, or excluded and copied inside the pause. */
  readonly keyless: KeylessAction;
  /** The runner's control directory (`<work-dir>/logs/online`), where the cutover is requested. */
  readonly controlDir: string;
  /** The runner's log, one JSON object a line (logFormat: json), for the cutover's timeline. */
  readonly logFile: string;
}

/** What the online contender does with pgbench_history, the one table without a primary key. */
export const KEYLESS_ACTIONS = ['replicaIdentityFull', 'exclude'] as const;
export type KeylessAction = (typeof KEYLESS_ACTIONS)[number];

export const CONTENDER_IDS = [
  'seed', 'tuned', 'pipe', 'runner-dump', 'runner-dump-noverify', 'runner-stream', 'runner-stream-noverify', 'runner-stream-split', 'online',
] as const;
/** Contenders that run only on the pgbench dataset (their write load is pgbench's own script). */
export const PGBENCH_ONLY: readonly ContenderId[] = ['online'];
export type ContenderId = (typeof CONTENDER_IDS)[number];

export interface ContenderContext {
  readonly source: PgServer;
  readonly destination: PgServer;
  /** Source and destination database names (the same name on both servers). */
  readonly database: string;
  readonly jobs: number;
  readonly binDir: string;
  /** Per-contender scratch directory (created by the caller, removed after the contender). */
  readonly dir: string;
  /** Secret files shared by all contenders. */
  readonly passFile: string;
  readonly secretsFile: string;
  readonly repoRoot: string;
  readonly timeoutSeconds: number;
  /** migration.verbose for the runner contenders (--runner-verbose): per-table COPY times in their log. */
  readonly runnerVerbose: boolean;
  /** runner-stream-split's migration.copy.splitTablesLargerThan (a quantity). */
  readonly splitLargerThan: string;
  /** The online contender's load and cutover (--online-rate, --online-clients, --online-hold, --online-verify). */
  readonly online: Omit<OnlineSettings, 'controlDir' | 'logFile'> & {
    readonly verify: 'counts' | 'checksums';
    /** migration.online.tablesWithoutKey for public.pgbench_history (--online-keyless). */
    readonly keyless: KeylessAction;
  };
}

const conn = (s: PgServer) => ['-h', s.host, '-p', String(s.port), '-U', s.superuser];

/** The environment of every child: no inherited libpq settings, and the password file for the hand runs. */
export function childEnv(passFile?: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  if (passFile) env.PGPASSFILE = passFile;
  return env;
}

export function writePassFile(file: string, servers: readonly PgServer[]): void {
  const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  writeFileSync(file, servers.map((s) => `${s.host}:${s.port}:*:${esc(s.superuser)}:${esc(s.superPassword)}\n`).join(''), { mode: 0o600 });
}

export function writeSecretsFile(file: string, source: PgServer, destination: PgServer): void {
  writeFileSync(file, stringify({
    apiVersion: 'v1', kind: 'Secret', metadata: { name: 'bench-pg' },
    stringData: { source: source.superPassword, destination: destination.superPassword },
  }), { mode: 0o600 });
}

/** `db-migration migrate` runs the runner bundle as `node <work-dir>/load-runner.js`: that process is the runner. */
const RUNNER_SCRIPT = `/${RUNNER_LOADER_FILE}`;
export { RUNNER_SCRIPT };

function runnerContender(
  ctx: ContenderContext, id: ContenderId, mode: 'dump' | 'stream' | 'online', verify: 'counts' | 'checksums' | 'none', split?: string,
): Contender {
  const workDir = join(ctx.dir, 'work');
  const specFile = join(ctx.dir, 'spec.yaml');
  const t = ctx.timeoutSeconds;
  const endpoint = (s: PgServer, key: string) => ({
    host: s.host, port: s.port, username: s.superuser, sslmode: 'disable', password: { secret: 'bench-pg', key },
  });
  writeFileSync(specFile, stringify({
    name: 'bench',
    namespace: 'bench',
    migration: {
      mode,
      verify,
      ...(ctx.runnerVerbose ? { verbose: true } : {}),
      dump: { jobs: ctx.jobs },
      restore: { jobs: ctx.jobs },
      copy: { jobs: ctx.jobs, ...(split ? { splitTablesLargerThan: split } : {}) },
      // A benchmark measures one attempt: a failure must show, not be retried.
      retries: { attempts: 1, delaySeconds: 0 },
      timeouts: { connect: 10, dump: t, restore: t, verify: t },
      ...(mode === 'online' ? {
        // JSON lines: millisecond timestamps for the cutover's timeline.
        logFormat: 'json',
        online: {
          cutover: 'manual',
          waitSeconds: t,
          // pgbench_history has no primary key. replicaIdentityFull (the default; the harness sets REPLICA IDENTITY FULL
          // on the source first): replicated like the others. exclude: not replicated, copied (truncate + COPY) inside the pause.
          tablesWithoutKey: { 'public.pgbench_history': ctx.online.keyless },
        },
      } : {}),
    },
    defaults: { source: endpoint(ctx.source, 'source'), destination: endpoint(ctx.destination, 'destination') },
    databases: [{ name: 'bench', source: { database: ctx.database }, destination: { database: ctx.database } }],
  }), { mode: 0o600 });
  // `npx db-migration migrate ...` minus npx's own start-up: the package's bin, which builds the runner bundle
  // into the work directory and runs it with node, exactly as the Job does.
  const bin = join(ctx.repoRoot, 'bin', 'db-migration.js');
  const args = [bin, 'migrate', '--spec', specFile, '--secrets', ctx.secretsFile, '--work-dir', workDir, '--bin-dir', ctx.binDir];
  const label = mode === 'online'
    ? `runner online (verify: ${verify}; pgbench -R ${ctx.online.rate} -c ${ctx.online.clients}; pgbench_history: ${ctx.online.keyless})`
    : `runner ${mode} (verify: ${verify}${split ? `; split tables > ${split}` : ''})`;
  return {
    id, label, kind: 'runner', mode, verify, workDir,
    dumpDir: join(workDir, 'dumps'),
    ...(mode === 'online' ? {
      online: {
        rate: ctx.online.rate, clients: ctx.online.clients, holdSeconds: ctx.online.holdSeconds, keyless: ctx.online.keyless,
        controlDir: join(workDir, 'logs', 'online'), logFile: join(workDir, 'logs', 'migration.log'),
      },
    } : {}),
    env: childEnv(),
    steps: [{ cmd: process.execPath, args, display: `node ${args.join(' ')}` }],
  };
}

export function buildContender(id: ContenderId, ctx: ContenderContext): Contender {
  const bin = (t: string) => join(ctx.binDir, t);
  const src = [...conn(ctx.source), '-d', ctx.database];
  const dst = [...conn(ctx.destination), '-d', ctx.database];
  const env = childEnv(ctx.passFile);
  const step = (cmd: string, args: string[]): Step => ({ cmd, args, display: `${cmd.split('/').pop()} ${args.join(' ')}` });
  switch (id) {
    case 'seed': {
      const dumpDir = join(ctx.dir, 'dump');
      const file = join(dumpDir, 'dump.sql');
      mkdirSync(dumpDir, { recursive: true, mode: 0o700 });
      return {
        id, label: 'seed: pg_dump plain + psql -f', kind: 'hand', dumpDir, env,
        steps: [
          step(bin('pg_dump'), [...src, '-f', file]),
          step(bin('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', ...dst, '-o', '/dev/null', '-f', file]),
        ],
      };
    }
    case 'tuned': {
      const dumpDir = join(ctx.dir, 'dump');
      return {
        id, label: `tuned: pg_dump -Fd -j ${ctx.jobs} + pg_restore -j ${ctx.jobs}`, kind: 'hand', dumpDir, env,
        steps: [
          step(bin('pg_dump'), [...src, '-Fd', '-j', String(ctx.jobs), '-Z0', '-f', dumpDir]),
          step(bin('pg_restore'), [...dst, '-j', String(ctx.jobs), dumpDir]),
        ],
      };
    }
    case 'pipe': {
      // Quoting: every argument is a path, host, port, name or flag without shell metacharacters.
      const sh = `set -o pipefail; '${bin('pg_dump')}' ${src.join(' ')} -Fc -Z0 | '${bin('pg_restore')}' ${dst.join(' ')}`;
      return {
        id, label: 'pipe: pg_dump -Fc | pg_restore', kind: 'hand', env,
        steps: [{ cmd: '/bin/bash', args: ['-c', sh], display: sh }],
      };
    }
    case 'runner-dump': return runnerContender(ctx, id, 'dump', 'counts');
    case 'runner-dump-noverify': return runnerContender(ctx, id, 'dump', 'none');
    case 'runner-stream': return runnerContender(ctx, id, 'stream', 'counts');
    case 'runner-stream-noverify': return runnerContender(ctx, id, 'stream', 'none');
    case 'runner-stream-split': return runnerContender(ctx, id, 'stream', 'counts', ctx.splitLargerThan);
    case 'online': return runnerContender(ctx, id, 'online', ctx.online.verify);
  }
}
