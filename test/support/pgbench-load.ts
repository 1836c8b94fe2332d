/**
 * pgbench's TPC-B-like script as a write load on a source database, at a fixed rate, for online-mode tests and
 * the benchmark: `pgbench -i` once, then `pgbench -R RATE` until stopped. Once the cutover's fence makes the
 * database read-only its clients fail and pgbench ends; that is expected.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { PgServer } from './pg-server';

function env(server: PgServer): NodeJS.ProcessEnv {
  return { ...process.env, PGHOST: server.host, PGPORT: String(server.port), PGUSER: server.superuser, PGPASSWORD: server.superPassword };
}

/** Creates and fills the pgbench tables (scale 1: 100,000 accounts). */
export function pgbenchInit(server: PgServer, database: string, binDir: string, scale = 1): void {
  const res = spawnSync(join(binDir, 'pgbench'), ['-i', '-q', '-s', String(scale), '--foreign-keys', database], { env: env(server), encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`pgbench -i failed: ${res.stderr}`);
}

export interface PgbenchLoad {
  readonly process: ChildProcess;
  /** Transactions pgbench reported as processed (known once it has ended). */
  stop(): Promise<string>;
}

export function startPgbench(server: PgServer, database: string, binDir: string, opts: { rate?: number; clients?: number } = {}): PgbenchLoad {
  const child = spawn(join(binDir, 'pgbench'), ['-n', '-c', String(opts.clients ?? 2), '-j', '1', '-R', String(opts.rate ?? 100), '-T', '3600', database],
    { env: env(server), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
  const ended = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await ended;
      return output;
    },
  };
}
