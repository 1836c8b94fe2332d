/**
 * Online mode under faults, against real PostgreSQL 15 servers (source with wal_level = logical): SIGTERM during
 * catch-up removes every replication object; SIGKILL of the bundled runner during catch-up (under a steady write
 * load) is followed by a run that continues from the slot and subscription the killed one left, without copying
 * again, and cuts over to an identical copy; SIGKILL during the initial copy is followed by a run that removes the
 * killed attempt's slot and publication and copies again; and `db-migration migrate --cleanup` removes what a killed run left.
 * The copies are compared with compare.ts's fingerprint, independently of the runner's own verification.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMarker } from '../src/runner/checks/progress-marker';
import { runMigration } from '../src/runner/migrate';
import { replicationName } from '../src/runner/online/names';
import type { RuntimeConfig } from '../src/spec/runtime-config';
import { runCliProcess } from './support/cli';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { replicatedContents } from './support/replication-faults';
import { buildRunnerBundle, captureOutput, createAppRoles, createRealisticDatabase, processesMatching, type Captured } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';
import { startWriteLoad, type WriteLoad } from './support/write-load';

const TEST_TIMEOUT = 240_000;

let source: PgServer;
let destination: PgServer;
let bundle: string;
const configs: TestRuntimeConfig[] = [];
const children: ChildProcess[] = [];
const loads: WriteLoad[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'dbm-online-faults-'));

beforeAll(async () => {
  [source, destination] = await Promise.all([
    startPgServer({ name: 'ofsrc', settings: { wal_level: 'logical' } }),
    startPgServer({ name: 'ofdst' }),
  ]);
  await createRealisticDatabase(source, 'shop');
  await createAppRoles(destination);
  bundle = buildRunnerBundle(tmp);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const l of loads) await l.stop().catch(() => undefined);
  for (const c of configs) c.cleanup();
  rmSync(tmp, { recursive: true, force: true });
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

/** A source database of its own for one test (a copy of the realistic one), and an online config migrating it. */
async function onlineSetup(label: string, online: { cutover: 'manual' | 'auto' }): Promise<{ t: TestRuntimeConfig; src: string; dst: string; name: string }> {
  const src = `shop_${label}`;
  const dst = `shop_${label}_copy`;
  await source.query(`CREATE DATABASE ${src} TEMPLATE shop`);
  const t = makeRuntimeConfig({
    source, destination,
    databases: [{ name: label, source: { database: src }, destination: { database: dst } }],
    migration: { mode: 'online', online, restore: { noOwner: false }, retries: { attempts: 2, delaySeconds: 1 } },
  });
  configs.push(t);
  return { t, src, dst, name: replicationName(t.config.name, label) };
}

function withCutover(config: RuntimeConfig, cutover: 'manual' | 'auto'): RuntimeConfig {
  return { ...config, migration: { ...config.migration, online: { ...config.migration.online, cutover } } };
}

/** The load of scratch/online1.ts: inserts, updates, deletes (published tables with keys) and a sequence. */
function shopLoad(database: string): WriteLoad {
  const load = startWriteLoad(source, database, [
    { sql: 'INSERT INTO public."café" ("名前", boisson, prix) VALUES (\'neu\', \'thé\', 1.5)' },
    { sql: 'UPDATE inventory.products SET price = price + 1 WHERE id = (1 + floor(random() * 500))::int' },
    { sql: 'DELETE FROM public."café" WHERE id = (SELECT min(id) FROM public."café")' },
    { sql: "SELECT nextval('sales.invoice_number_seq')" },
  ]);
  loads.push(load);
  return load;
}

async function untilCommitted(load: WriteLoad, atLeast: number): Promise<void> {
  const until = Date.now() + 60_000;
  while (load.committed() < atLeast) {
    if (Date.now() > until) throw new Error(`the write load committed only ${load.committed()} transactions`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface RunnerProcess {
  readonly child: ChildProcess;
  readonly out: Captured;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

/** The bundled runner (what the Job runs) as a child process, on the test's config file. */
function spawnRunner(t: TestRuntimeConfig, config: RuntimeConfig, args: string[]): RunnerProcess {
  const configFile = join(t.workDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config));
  const child = spawn(process.execPath, [bundle, '--config', configFile, '--bin-dir', PG_BIN, ...args], {
    env: { ...process.env, ...t.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const out = captureOutput();
  child.stdout!.pipe(out.stream);
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, out, stderr: () => stderr, exited };
}

/**
 * SIGKILL, as a node's death or an OOM kill takes the pod: the runner, then any tool it started (they run in
 * process groups of their own, and their command lines name the work directory).
 */
async function killRunner(r: RunnerProcess, t: TestRuntimeConfig): Promise<void> {
  r.child.kill('SIGKILL');
  await r.exited;
  for (const p of processesMatching(t.workDir)) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone meanwhile */ }
  }
}

/** The spec and Secret manifests files an operator would give `db-migration migrate` for the test's database. */
function writeSpecFiles(t: TestRuntimeConfig, label: string, src: string, dst: string): { spec: string; secrets: string } {
  const spec = join(t.workDir, 'migration.yaml');
  const secrets = join(t.workDir, 'secrets.yaml');
  writeFileSync(spec, `namespace: ${t.config.namespace}
name: ${t.config.name}
defaults:
  source:      { host: ${source.host}, port: ${source.port}, username: ${source.superuser}, password: { secret: pg, key: source } }
  destination: { host: ${destination.host}, port: ${destination.port}, username: ${destination.superuser}, password: { secret: pg, key: destination } }
migration: { mode: online }
databases:
  - { name: ${label}, source: { database: ${src} }, destination: { database: ${dst} } }
`);
  writeFileSync(secrets, `apiVersion: v1
kind: Secret
metadata: { name: pg, namespace: ${t.config.namespace} }
stringData: { source: "${source.superPassword}", destination: "${destination.superPassword}" }
`);
  return { spec, secrets };
}

/** Our replication objects that exist: slot (source server), publication (source database), subscription (destination). */
async function replicationObjects(src: string, name: string): Promise<string[]> {
  const found: string[] = [];
  const [slots, pubs, subs] = await Promise.all([
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = '${name}'`),
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_publication WHERE pubname = '${name}'`, src),
    // pg_subscription is a shared catalog: this sees the subscriptions of every destination database.
    destination.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_subscription WHERE subname = '${name}'`),
  ]);
  if (slots[0].n) found.push('slot');
  if (pubs[0].n) found.push('publication');
  if (subs[0].n) found.push('subscription');
  return found;
}

async function markerOf(database: string) {
  const [row] = await destination.query<{ c: string | null }>(
    `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = '${database}'`);
  return parseMarker(row?.c);
}

async function databaseOid(server: PgServer, database: string): Promise<number | undefined> {
  const [row] = await server.query<{ oid: number }>(`SELECT oid::int AS oid FROM pg_database WHERE datname = '${database}'`);
  return row?.oid;
}

async function expectSameData(src: string, dst: string): Promise<void> {
  const [a, b] = await Promise.all([replicatedContents(source, src), replicatedContents(destination, dst)]);
  expect(Object.keys(a.tables).length).toBeGreaterThanOrEqual(9);
  expect(b.tables).toEqual(a.tables);
  expect(b.sequences).toEqual(a.sequences);
}

/** Lifts the cutover's fence so the source database can be written (and dropped) again. */
async function unfence(src: string): Promise<void> {
  await source.query(`ALTER DATABASE ${src} RESET default_transaction_read_only`);
}

describe('online mode faults', () => {
  it('on SIGTERM during catch-up, drops the slot, publication and subscription and records the database as interrupted', async () => {
    // given an online migration (cutover: manual) that has copied and is replicating
    const { t, src, name } = await onlineSetup('sigterm', { cutover: 'manual' });
    const abort = new AbortController();
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, signal: abort.signal, progressIntervalMs: 200 });
    await out.waitFor(/\[sigterm\] \[replicate\] (caught up|replicating:)/, 120_000);
    expect(await replicationObjects(src, name)).toEqual(['slot', 'publication', 'subscription']);

    // when the runner is told to stop (main turns SIGTERM into this abort)
    abort.abort(new Error('received SIGTERM'));
    const summary = await run;

    // then the summary says interrupted, in the replication phase
    expect(summary.interrupted).toBe(true);
    expect(summary.ok).toBe(false);
    expect(summary.databases[0]).toMatchObject({ name: 'sigterm', status: 'interrupted', phase: 'replicate' });
    expect(out.text()).toMatch(/⚠️ \[sigterm\] \[replicate\] interrupted during replicate/);
    // and every replication object is gone from both servers, as the log says
    expect(out.text()).toMatch(new RegExp(`removed the replication objects: subscription ${name} \\(destination\\), `
      + `replication slot ${name} \\(source\\), publication ${name} \\(source\\)`));
    expect(await replicationObjects(src, name)).toEqual([]);
    // and the source was never fenced
    const [{ ro }] = await source.query<{ ro: string }>("SELECT current_setting('default_transaction_read_only') AS ro", src);
    expect(ro).toBe('off');
  }, TEST_TIMEOUT);

  it('after SIGKILL during catch-up under a write load, a --resume run continues from the slot and subscription and cuts over to an identical copy', async () => {
    // given a source under a steady write load, and the bundled runner (cutover: manual, --resume as the Job runs it)
    const { t, src, dst, name } = await onlineSetup('sigkill', { cutover: 'manual' });
    const load = shopLoad(src);
    await untilCommitted(load, 20);
    const first = spawnRunner(t, t.config, ['--resume']);
    await first.out.waitFor(/\[sigkill\] \[replicate\] (caught up|replicating:)/, 120_000);
    const committedAtKill = load.committed();

    // when it is killed during catch-up
    await killRunner(first, t);

    // then its slot, publication and subscription stay, the destination is marked replicating, and the
    // subscription keeps applying the load's changes with no runner alive
    expect(first.out.text()).toMatch(/\[sigkill\] \[replicate\] initial copy: \d+ tables/);
    expect(await replicationObjects(src, name)).toEqual(['slot', 'publication', 'subscription']);
    expect(await markerOf(dst)).toMatchObject({ state: 'replicating', created: true, database: 'sigkill' });
    const oidBefore = await databaseOid(destination, dst);
    await untilCommitted(load, committedAtKill + 50);

    // when the migration runs again with resume, now with cutover: auto
    const out = captureOutput();
    const summary = await runMigration(withCutover(t.config, 'auto'), { env: t.env, binDir: PG_BIN, out: out.stream, resume: true, progressIntervalMs: 200 });
    const refusedByFence = load.refused();
    await load.stop();

    // then it continued the replication the killed run started: no new slot, no copy, the same destination database
    const text = out.text();
    expect(summary.databases[0], text).toMatchObject({ name: 'sigkill', status: 'migrated' });
    expect(summary.ok).toBe(true);
    expect(text).toMatch(/\[sigkill\] \[preflight\] an earlier attempt copied it and was replicating .*replication continues from its slot/);
    expect(text).toMatch(new RegExp(`\\[sigkill\\] \\[replicate\\] continuing the replication an earlier attempt started: slot, publication and subscription ${name} are in place`));
    expect(text).not.toMatch(/initial copy/);
    expect(text).not.toMatch(/publication and logical replication slot .* created/);
    expect(text).not.toMatch(/removed what an earlier attempt left/);
    expect(await databaseOid(destination, dst)).toBe(oidBefore);
    // and it cut over (the fence stopped the writers), the copy matching the source table for table and in its sequences
    expect(text).toMatch(/\[sigkill\] \[cutover\] cut over: write pause/);
    expect(refusedByFence).toBeGreaterThan(0);
    await expectSameData(src, dst);
    expect(await markerOf(dst)).toMatchObject({ state: 'verified' });
    // and nothing of ours is left on either server
    expect(await replicationObjects(src, name)).toEqual([]);
    await unfence(src);
  }, TEST_TIMEOUT);

  it('after SIGKILL during the initial copy, a --resume run removes the killed attempt\'s slot and publication, copies again and converges', async () => {
    // given the bundled runner that has just created its publication and slot and started the copy
    const { t, src, dst, name } = await onlineSetup('copykill', { cutover: 'manual' });
    const first = spawnRunner(t, t.config, ['--resume']);
    await first.out.waitFor(/\[copykill\] \[replicate\] publication and logical replication slot \S+ created on the source/, 120_000);

    // when it is killed there
    await killRunner(first, t);

    // then it was killed before the copy ended: slot and publication exist, no subscription yet, the destination marked restoring
    expect(first.out.text()).not.toMatch(/initial copy:/);
    expect(await replicationObjects(src, name)).toEqual(['slot', 'publication']);
    expect(await markerOf(dst)).toMatchObject({ state: 'restoring', created: true });

    // when the migration runs again with resume (cutover: auto)
    const out = captureOutput();
    const summary = await runMigration(withCutover(t.config, 'auto'), { env: t.env, binDir: PG_BIN, out: out.stream, resume: true, progressIntervalMs: 200 });

    // then it warned about the leftovers, reset the half-copied database, removed the earlier slot and publication and copied again
    const text = out.text();
    expect(summary.databases[0], text).toMatchObject({ name: 'copykill', status: 'migrated' });
    expect(text).toMatch(/\[copykill\] \[preflight\] .*publication \S+ and replication slot \S+ of an earlier attempt exist on the source/);
    expect(text).toMatch(/\[copykill\] \[preflight\] an earlier attempt left it half-restored .*dropped and re-created/);
    expect(text).toMatch(new RegExp(`\\[copykill\\] \\[replicate\\] removed what an earlier attempt left before starting again: `
      + `replication slot ${name} \\(source\\), publication ${name} \\(source\\)`));
    expect(text).toMatch(/\[copykill\] \[replicate\] initial copy: \d+ tables/);
    expect(text).toMatch(/\[copykill\] \[cutover\] cut over: write pause/);
    // and the copy matches the source, and nothing of ours is left
    await expectSameData(src, dst);
    expect(await replicationObjects(src, name)).toEqual([]);
    await unfence(src);
  }, TEST_TIMEOUT);

  it('migrate --cleanup removes what a run killed during catch-up left, lists it, and finds nothing the second time', async () => {
    // given a run killed during catch-up and not run again
    const { t, src, dst, name } = await onlineSetup('cleanup', { cutover: 'manual' });
    const first = spawnRunner(t, t.config, ['--resume']);
    await first.out.waitFor(/\[cleanup\] \[replicate\] (caught up|replicating:)/, 120_000);
    await killRunner(first, t);
    expect(await replicationObjects(src, name)).toEqual(['slot', 'publication', 'subscription']);

    // when the operator runs `db-migration migrate --cleanup` with the spec and the Secret manifests
    const { spec, secrets } = writeSpecFiles(t, 'cleanup', src, dst);
    const cli = runCliProcess(['migrate', '--cleanup', '--spec', spec, '--secrets', secrets, '--work-dir', join(t.workDir, 'cli'), '--bin-dir', PG_BIN]);

    // then it lists what it removed, exits 0, and neither server has any of it
    expect(cli.code, `${cli.stdout}\n${cli.stderr}`).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`✅ \\[cleanup\\] \\[cleanup\\] removed subscription ${name} \\(destination\\), `
      + `replication slot ${name} \\(source\\), publication ${name} \\(source\\)`));
    expect(cli.stdout).not.toContain(source.superPassword);
    expect(await replicationObjects(src, name)).toEqual([]);
    // and nothing else was touched: the source accepts writes, the destination database is still there
    await source.query('INSERT INTO public."café" ("名前", boisson, prix) VALUES (\'after\', \'eau\', 1)', src);
    expect(await databaseOid(destination, dst)).toBeDefined();

    // when cleanup runs again, as the Job's runner (--cleanup)
    const again = spawnRunner(t, t.config, ['--cleanup']);
    expect(await again.exited, `${again.out.text()}\n${again.stderr()}`).toBe(0);

    // then there is nothing to remove
    expect(again.out.text()).toMatch(new RegExp(`\\[cleanup\\] \\[cleanup\\] nothing to remove: no publication, slot or subscription named ${name}`));
    expect(again.out.text()).not.toMatch(/removed/);
  }, TEST_TIMEOUT);
});
