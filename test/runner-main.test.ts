/**
 * The bundled runner as the Job runs it: --help standalone, config errors (exit 2, field paths, no stack
 * trace), and a verbose run whose children's command lines, logs and summaries never hold a password.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forCompletionIndex, loadRuntimeConfig, parseArgs } from '../src/runner/main';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { buildRunnerBundle, createAppRoles, createRealisticDatabase, processesMatching, readIfExists } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const tmp = mkdtempSync(join(tmpdir(), 'dbm-main-'));
let bundle: string;

interface Run { code: number | null; stdout: string; stderr: string }

function runBundle(args: string[], env: NodeJS.ProcessEnv = {}, cwd = tmp): Promise<Run> & { pid: number } {
  const child = spawn(process.execPath, [bundle, ...args], { env: { PATH: process.env.PATH, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const p = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return Object.assign(p, { pid: child.pid! });
}

beforeAll(() => {
  // A copy in a directory without node_modules: the bundle must stand alone.
  const built = buildRunnerBundle(mkdtempSync(join(tmp, 'build-')));
  const standalone = mkdtempSync(join(tmp, 'standalone-'));
  bundle = join(standalone, 'runner.js');
  copyFileSync(built, bundle);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('runner main: arguments and config', () => {
  it('--help prints the usage and exits 0, standalone from the bundle', async () => {
    const r = await runBundle(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: node runner\.js/);
    expect(r.stdout).toContain('--config FILE');
    expect(r.stdout).toContain('/etc/db-migration/config/config.json');
    expect(r.stderr).toBe('');
  });

  it('fails with exit 2 and field paths for a hand-edited config, without a stack trace', async () => {
    // given a valid config edited by hand: a port as a string, a bad log format and an unknown field
    const t = makeRuntimeConfig({
      source: { host: 'db', port: 5432, superPassword: 'x' }, destination: { host: 'db2', port: 5432, superPassword: 'y' },
      databases: [{ name: 'app', source: { database: 'app' }, destination: { database: 'app' } }],
    });
    try {
      const raw = JSON.parse(JSON.stringify(t.config));
      raw.databases[0].source.port = '5432';
      raw.migration.logFormat = 'xml';
      raw.databases[0].destination.pasword = 'oops';
      const file = join(t.workDir, 'config.json');
      writeFileSync(file, JSON.stringify(raw));

      // when the runner starts
      const r = await runBundle(['--config', file]);

      // then
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${file}: databases[0].source.port:`);
      expect(r.stderr).toContain(`${file}: migration.logFormat:`);
      expect(r.stderr).toMatch(/databases\[0\]\.destination.*pasword/);
      expect(r.stderr).toContain('the config has 3 problems');
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    } finally {
      t.cleanup();
    }
  });

  it('fails with exit 2 for a missing config, invalid JSON, a bad argument or a bad completion index', async () => {
    const missing = await runBundle(['--config', join(tmp, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('nope.json: cannot read the config (no such file)');

    const badJson = join(tmp, 'bad.json');
    writeFileSync(badJson, '{ "apiVersion": ');
    const invalid = await runBundle(['--config', badJson]);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toMatch(/bad\.json: not valid JSON/);

    const badArg = await runBundle(['--bogus']);
    expect(badArg.code).toBe(2);
    expect(badArg.stderr).toContain('unknown argument "--bogus"');

    for (const r of [missing, invalid, badArg]) expect(r.stderr).not.toMatch(/\n\s+at /);

    expect(() => parseArgs(['--log-format', 'yaml'])).toThrow(/--log-format must be text or json/);
    expect(parseArgs(['--config=/x.json', '--dry-run', '--log-format=json', '--bin-dir', '/pg'])).toMatchObject({
      config: '/x.json', dryRun: true, logFormat: 'json', binDir: '/pg', verbose: false, help: false,
    });
    expect(parseArgs([]).config).toBe('/etc/db-migration/config/config.json');
  });

  it('in an Indexed Job migrates only the enabled database at JOB_COMPLETION_INDEX', () => {
    const t = makeRuntimeConfig({
      source: { host: 'db', port: 5432, superPassword: 'x' }, destination: { host: 'db2', port: 5432, superPassword: 'y' },
      databases: ['a', 'b', 'c'].map((n) => ({ name: n, enabled: n !== 'b', source: { database: n }, destination: { database: n } })),
    });
    try {
      expect(forCompletionIndex(t.config, '1').databases.map((d) => [d.name, d.enabled])).toEqual([['a', false], ['b', false], ['c', true]]);
      expect(forCompletionIndex(t.config, undefined)).toBe(t.config);
      expect(() => forCompletionIndex(t.config, '2')).toThrow(/JOB_COMPLETION_INDEX=2 does not name one of the 2 enabled databases/);
      const file = join(t.workDir, 'config.json');
      writeFileSync(file, JSON.stringify(t.config));
      expect(loadRuntimeConfig(file)).toEqual(t.config);
    } finally {
      t.cleanup();
    }
  });
});

describe('runner main: a real run keeps secrets out of arguments, logs and summaries', () => {
  let source: PgServer;
  let destination: PgServer;
  let t: TestRuntimeConfig;

  beforeAll(async () => {
    [source, destination] = await Promise.all([startPgServer({ name: 'msrc' }), startPgServer({ name: 'mdst' })]);
    await createRealisticDatabase(source, 'shop');
    await createAppRoles(destination);
  });

  afterAll(async () => {
    t?.cleanup();
    await Promise.all([source?.destroy(), destination?.destroy()]);
  });

  it('runs verbose with JSON logs; no password in any child command line, log line or summary', async () => {
    // given a verbose run whose dump waits on a source lock and whose restore waits on a destination lock,
    // so the children can be sampled while they run
    t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop' } }],
      migration: { verbose: true },
    });
    const passwords = [source.superPassword, destination.superPassword];
    const configFile = join(t.workDir, 'config.json');
    writeFileSync(configFile, JSON.stringify(t.config));
    const session = async (server: PgServer, database: string) => {
      const c = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database });
      await c.connect();
      return c;
    };
    const srcLock = await session(source, 'shop');
    await srcLock.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
    await destination.query('CREATE DATABASE shop');
    const dstLock = await session(destination, 'shop');
    await dstLock.query('BEGIN; CREATE SCHEMA sales');

    const run = runBundle(['--config', configFile, '--bin-dir', PG_BIN, '--log-format', 'json'], { ...process.env, ...t.env });
    const runnerCmdline = readFileSync(`/proc/${run.pid}/cmdline`, 'utf8').split('\0');
    const sampled = new Map<number, string[]>();
    const environs: Record<string, string>[] = [];
    let peakKiB = 0;
    const sample = () => {
      try {
        const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${run.pid}/status`, 'utf8'));
        if (hwm) peakKiB = Math.max(peakKiB, Number(hwm[1]));
      } catch { /* exited */ }
      for (const p of processesMatching(t.config.paths.dumps)) {
        if (!sampled.has(p.pid)) {
          sampled.set(p.pid, p.argv);
          try {
            const envText = readFileSync(`/proc/${p.pid}/environ`, 'utf8');
            environs.push(Object.fromEntries(envText.split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
          } catch { /* exited */ }
        }
      }
    };
    const timer = setInterval(sample, 20);
    const waitForTool = async (tool: string) => {
      const until = Date.now() + 60_000;
      while (Date.now() < until && ![...sampled.values()].some((a) => a[0].endsWith(tool))) await new Promise((r) => setTimeout(r, 20));
    };
    try {
      await waitForTool('pg_dump');
      await srcLock.query('ROLLBACK');
      await waitForTool('pg_restore');
      await dstLock.query('ROLLBACK');
      const r = await run;
      clearInterval(timer);

      // then the run succeeded, and both tools were seen running
      expect(r.code).toBe(0);
      const tools = [...sampled.values()].map((a) => a[0].split('/').pop());
      expect(tools).toContain('pg_dump');
      expect(tools).toContain('pg_restore');
      // the runner's own peak memory stays well under 100 MiB (tool output is streamed, not buffered)
      expect(peakKiB).toBeGreaterThan(0);
      expect(peakKiB).toBeLessThan(100 * 1024);
      // no password in any command line (the runner's own included)
      const cmdlines = [...sampled.values(), runnerCmdline].map((a) => a.join(' '));
      for (const pw of passwords) for (const c of cmdlines) expect(c).not.toContain(pw);
      // each tool got only its own password, and none of the DBM_* variables
      for (const e of environs) {
        expect(Object.keys(e).filter((k) => k.startsWith('DBM_'))).toEqual([]);
        if (e.PGPASSWORD) expect(passwords).toContain(e.PGPASSWORD);
        if (e.PGDATABASE && e.PGHOST && Number(e.PGPORT) === source.port) expect(e.PGPASSWORD).toBe(source.superPassword);
      }
      // the output is JSON lines, verbose (the commands are logged), with no password anywhere
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
      expect(lines.length).toBeGreaterThan(10);
      for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
      expect(r.stdout).toMatch(/"msg":"running PGHOST=.*PGPASSWORD=<from \$DBM_SHOP_SOURCE_PASSWORD>.*pg_dump/);
      const everything = [
        r.stdout, r.stderr, readIfExists(join(t.config.paths.logs, 'migration.log')),
        readIfExists(join(t.config.paths.logs, 'summary.json')), readIfExists(t.config.paths.terminationLog!),
      ].join('\n');
      expect(everything).toContain('"status":"migrated"');
      for (const pw of passwords) expect(everything).not.toContain(pw);
    } finally {
      clearInterval(timer);
      await srcLock.end().catch(() => undefined);
      await dstLock.end().catch(() => undefined);
    }
  });

  it('exits 1 when the migration fails (wrong password), with the cause and no stack trace', async () => {
    const wrong = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop', password: 'Not-The-Password' }, destination: { database: 'shop_x' } }],
    });
    try {
      const file = join(wrong.workDir, 'config.json');
      writeFileSync(file, JSON.stringify(wrong.config));
      const r = await runBundle(['--config', file, '--bin-dir', PG_BIN], { ...process.env, ...wrong.env });
      expect(r.code).toBe(1);
      expect(r.stdout).toMatch(/❌ \[shop\] \[preflight\] source .*password authentication failed/);
      expect(r.stdout + r.stderr).not.toContain('Not-The-Password');
      expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      wrong.cleanup();
    }
  });
});
