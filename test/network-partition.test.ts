/**
 * Silent network partitions between the runner and its servers, for real: the source and the destination each run
 * in a network namespace of their own behind a veth link (support/netns.ts), `db-migration migrate` runs in the root
 * namespace (a pod on a third node). In the middle of a phase the link drops every packet without a reset; with
 * migration.timeouts.network: 12 the failed attempt must be reported within that bound plus a little slack, the retry
 * runs once the link is back, and the destination is identical to the source (compare.ts, independent of the
 * runner's own verification). A link that never comes back fails the database clearly, leaves the source untouched
 * and no session on it; a re-run with --resume then converges. A 100 ms round trip only makes a run slower.
 * Needs root, ip and tc. The measured times are printed (console.log) for the CI output; only bounds are asserted.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/main';
import { fingerprint, type DatabaseFingerprint } from './support/compare';
import { cleanupStale, createHost, startDelayRelay, startPgServerIn, type DelayRelay, type Host } from './support/netns';
import { PG_BIN, type PgServer } from './support/pg-server';

const run = promisify(execFile);
/** 12 s: node sessions notice a silent server after the timeout, at least 11 s (idle time, then libuv's 10 one-second probes). */
const NETWORK_TIMEOUT = 12;
/** What a failed attempt may take beyond the network timeout: polling, the process exit, closing the other sessions. */
const SLACK = 5;
const RETRIES = { attempts: 3, delaySeconds: 2 };
const CASE_MS = 300_000;

interface LogLine { readonly at: number; readonly text: string; readonly json?: { ts: string; level: string; database?: string; phase?: string; msg: string } }
interface Migration {
  readonly lines: LogLine[];
  readonly exited: Promise<number>;
  /** Resolves with the first line (already written or to come) that `match` accepts. */
  waitFor(what: string, match: (l: LogLine) => boolean, timeoutMs: number): Promise<LogLine>;
  text(): string;
}

let srcHost: Host;
let dstHost: Host;
let source: PgServer;
let destination: PgServer;
let work: string;
let secrets: string;
const original: Record<string, DatabaseFingerprint> = {};
const measured: string[] = [];
/** Every run started, so afterAll can let a run a failed case left behind finish before removing its servers. */
const runs: Promise<number>[] = [];

/** A table of 300 000 rows (~50 MB of COPY text) with six indexes, and a small one with a foreign key to it. */
const BIG_SQL = `
  CREATE TABLE items (id bigint PRIMARY KEY, sku text NOT NULL, title text NOT NULL, body text, qty integer NOT NULL, created_at timestamptz NOT NULL);
  INSERT INTO items SELECT g, 'sku-' || md5(g::text), initcap(md5((g * 31)::text)), repeat(md5((g * 7)::text), 1 + g % 3), g % 997,
    timestamptz '2024-01-01' + g * interval '17 s' FROM generate_series(1, 300000) g;
  CREATE UNIQUE INDEX items_sku ON items (sku);
  CREATE INDEX items_title ON items (title);
  CREATE INDEX items_body ON items (body);
  CREATE INDEX items_qty_sku ON items (qty, sku);
  CREATE INDEX items_created_title ON items (created_at, title);
  CREATE INDEX items_title_body ON items (title, body);
  CREATE TABLE notes (id serial PRIMARY KEY, item_id bigint NOT NULL REFERENCES items, note text);
  INSERT INTO notes (item_id, note) SELECT g * 3, 'note ' || g FROM generate_series(1, 50000) g;`;

/** 24 tables of a few hundred rows, each with a primary key, two indexes, a foreign key to a shared table and to its predecessor. */
const MANY_SQL = `
  CREATE TABLE dims (id integer PRIMARY KEY, code text NOT NULL UNIQUE);
  INSERT INTO dims SELECT g, 'd' || g FROM generate_series(1, 100) g;
  DO $$ BEGIN FOR i IN 1..24 LOOP
    EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, dim_id integer NOT NULL REFERENCES dims, prev_id bigint %s, label text, at timestamptz)',
      i, CASE WHEN i > 1 THEN format('REFERENCES t%s', i - 1) ELSE '' END);
    EXECUTE format('INSERT INTO t%s (dim_id, prev_id, label, at) SELECT 1 + g %% 100, %s, md5(g::text), timestamptz ''2024-01-01'' + g * interval ''1 h''
      FROM generate_series(1, %s) g', i, CASE WHEN i > 1 THEN '1 + g % 300' ELSE 'NULL' END, 300 + i);
    EXECUTE format('CREATE INDEX ON t%s (dim_id)', i);
    EXECUTE format('CREATE INDEX ON t%s (label, at)', i);
  END LOOP; END $$;`;

beforeAll(async () => {
  // given a source and a destination server, each on a host of its own
  cleanupStale();
  srcHost = createHost('src');
  dstHost = createHost('dst');
  // Index builds on the destination sort on disk, one process each, so post-data lasts long enough to be hit.
  [source, destination] = await Promise.all([startPgServerIn(srcHost),
    startPgServerIn(dstHost, { settings: { maintenance_work_mem: "'1MB'", max_parallel_maintenance_workers: '0' } })]);
  for (const [db, sql] of [['big', BIG_SQL], ['many', MANY_SQL]] as const) {
    await source.query(`CREATE DATABASE ${db}`);
    await source.query(sql, db);
    await source.query('VACUUM ANALYZE', db);
    original[db] = await fingerprint(source, db);
  }
  work = mkdtempSync(join(tmpdir(), 'dbm-netpart-'));
  secrets = join(work, 'secrets.yaml');
  writeFileSync(secrets, `apiVersion: v1
kind: Secret
metadata: { name: pg, namespace: netpart }
stringData: { source: "${source.superPassword}", destination: "${destination.superPassword}" }
`);
}, 300_000);

afterAll(async () => {
  srcHost?.heal();
  dstHost?.heal();
  await Promise.race([Promise.allSettled(runs), new Promise((r) => setTimeout(r, 60_000))]);
  await Promise.all([source?.destroy(), destination?.destroy()]);
  srcHost?.destroy();
  dstHost?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
  if (measured.length) console.log(`network-partition measurements:\n  ${measured.join('\n  ')}`);
});

/** A spec migrating source database `db` into `target`, with JSON log lines, the small network timeout and retries. */
function writeSpec(file: string, db: string, target: string, migration: Record<string, unknown>,
  via: { source?: { host: string; port: number }; destination?: { host: string; port: number } } = {}): string {
  const endpoint = (server: PgServer, key: string, at?: { host: string; port: number }) =>
    ({ host: at?.host ?? server.host, port: at?.port ?? server.port, username: 'postgres', password: { secret: 'pg', key } });
  const spec = {
    namespace: 'netpart',
    defaults: { source: endpoint(source, 'source', via.source), destination: endpoint(destination, 'destination', via.destination) },
    migration: { logFormat: 'json', timeouts: { network: NETWORK_TIMEOUT, connect: 5 }, retries: RETRIES, ...migration },
    databases: [{ name: db, source: { database: db }, destination: { database: target } }],
  };
  const path = join(work, `${file}.yaml`);
  writeFileSync(path, JSON.stringify(spec, null, 2)); // JSON is YAML
  return path;
}

/** `db-migration migrate` (the runner as a child process), every output line kept with the time it arrived. */
function migrate(spec: string, workDir: string, extra: string[] = []): Migration {
  const lines: LogLine[] = [];
  const waiters = new Set<(l: LogLine) => void>();
  const take = (text: string) => {
    let json: LogLine['json'];
    try { json = text.startsWith('{') ? JSON.parse(text) : undefined; } catch { /* a plain line */ }
    const line = { at: Date.now(), text, json };
    lines.push(line);
    for (const w of [...waiters]) w(line);
  };
  const exited = main(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', workDir, '--bin-dir', PG_BIN, ...extra], { out: take, err: take });
  runs.push(exited);
  return {
    lines, exited,
    text: () => lines.map((l) => l.text).join('\n'),
    waitFor: (what, match, timeoutMs) => {
      const found = lines.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const fail = (why: string) => { waiters.delete(w); clearTimeout(t); reject(new Error(`${what}: ${why}; output:\n${lines.map((l) => l.text).join('\n')}`)); };
        const t = setTimeout(() => fail(`not within ${timeoutMs} ms`), timeoutMs);
        const w = (l: LogLine) => { if (match(l)) { waiters.delete(w); clearTimeout(t); resolve(l); } };
        waiters.add(w);
        void exited.then((code) => fail(`the run exited (${code}) first`));
      });
    },
  };
}

/** Polls `probe` until it holds; fails when the run ends first or after `timeoutMs`. */
async function until(what: string, probe: () => Promise<boolean>, m?: Migration, timeoutMs = 120_000): Promise<void> {
  let code: number | undefined;
  void m?.exited.then((c) => { code = c; });
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await probe()) return;
    if (code !== undefined) throw new Error(`${what}: the run exited (${code}) first; output:\n${m!.text()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${m ? `; output:\n${m.text()}` : ''}`);
}

/** Whether a session of the runner (or of its pg_dump / pg_restore) runs a statement matching `like` on `server`. */
async function runnerRuns(server: PgServer, like: string): Promise<boolean> {
  const [row] = await server.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE application_name LIKE 'db-migration%' AND state = 'active' AND query ILIKE '${like}'`);
  return row.n > 0;
}

/** Slows the traffic leaving `host` ('from': shaped on its own end, inside its namespace) or reaching it ('to': on the root end) to 20 Mbit/s. */
async function throttle(host: Host, direction: 'from' | 'to'): Promise<() => Promise<void>> {
  const dev = direction === 'from' ? host.link.replace(/r(\d+)$/, 'h$1') : host.link;
  const tc = (args: string[]) => (direction === 'from' ? host.exec('tc', args) : run('tc', args));
  await tc(['qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', '20mbit', 'burst', '64kb', 'latency', '50ms']);
  return () => tc(['qdisc', 'del', 'dev', dev, 'root']).then(() => undefined, () => undefined);
}

interface Summary { databases: { name: string; status: string; phase?: string; error?: string }[] }
const summaryOf = (workDir: string): Summary => JSON.parse(readFileSync(join(workDir, 'logs', 'summary.json'), 'utf8'));

/** The line that reports the first failed attempt of `phase`: the retry's "attempt 2/n after <reason>", or the failure itself. */
const attemptFailed = (phase: string) => (l: LogLine) => l.json?.phase === phase
  && ((l.json.level === 'warn' && /^attempt 2\/\d+ after /.test(l.json.msg)) || (l.json.level === 'error' && /failed|gave up/.test(l.json.msg)));

/** Bytes carried by `host`'s link so far, both directions (root-side counters). */
const linkBytes = (host: Host) => ['rx_bytes', 'tx_bytes']
  .reduce((n, c) => n + Number(readFileSync(`/sys/class/net/${host.link}/statistics/${c}`, 'utf8')), 0);

/** The output from `from` on, each line with its time relative to `from` (for failure messages). */
const timeline = (m: Migration, from: number) => m.lines.filter((l) => l.at >= from - 1000).slice(0, 60)
  .map((l) => `${((l.at - from) / 1000).toFixed(2)} s ${l.text.slice(0, 300)}`).join('\n');

/**
 * One partition case: `side`'s link (throttled when the phase must last), the migration started, and once `running`
 * sees the phase at work (with `midway`, once 8 MB more have crossed the link) the link is cut; the failed attempt
 * must be reported within the bound and name the network; the link heals and the retry finishes the migration with
 * the destination identical to the source.
 */
async function partitionCase(name: string, opts: {
  mode: 'dump' | 'stream'; side: 'source' | 'destination'; phase: string; target: string; throttled: boolean; midway: boolean;
  running: (m: Migration) => Promise<boolean>;
}): Promise<void> {
  const host = opts.side === 'source' ? srcHost : dstHost;
  const workDir = join(work, opts.target);
  const unthrottle = opts.throttled ? await throttle(host, opts.side === 'source' ? 'from' : 'to') : async () => undefined;
  const m = migrate(writeSpec(opts.target, 'big', opts.target, { mode: opts.mode, verbose: true }), workDir);
  let cut = 0;
  let failed: LogLine;
  try {
    // when the link is cut while the phase runs
    await until(`${opts.phase} at work`, () => opts.running(m), m);
    const bytes = linkBytes(host);
    if (opts.midway) await until('8 MB more over the link', async () => linkBytes(host) - bytes > 8 << 20, m);
    host.partition();
    cut = Date.now();
    failed = await m.waitFor(`a failed ${opts.phase} attempt`, attemptFailed(opts.phase), 180_000);
  } finally {
    host.heal();
    await unthrottle();
  }
  const detection = (failed.at - cut) / 1000;
  measured.push(`${name}: failure reported ${detection.toFixed(1)} s after the partition (bound ${NETWORK_TIMEOUT + SLACK} s): ${failed.json!.msg}`);
  console.log(measured[measured.length - 1]);
  // then the failed attempt was reported within the network timeout and a little slack, as a network failure
  const code = await m.exited;
  // (soft: a late or misnamed report is recorded, and the retry and the data are still checked)
  expect.soft(detection, `detection time; output from the partition on:\n${timeline(m, cut)}`).toBeLessThanOrEqual(NETWORK_TIMEOUT + SLACK);
  // (libpq reports a write that timed out as "server closed the connection unexpectedly": a connection reset)
  expect.soft(failed.json!.msg, `the failed attempt names the network; output:\n${timeline(m, cut)}`).toMatch(/after (network timeout|connection reset)/);
  // and once the link was back the retry migrated the database, identical to the source
  expect(code, m.text()).toBe(0);
  expect(summaryOf(workDir).databases[0]).toMatchObject({ name: 'big', status: 'migrated' });
  expect(await fingerprint(destination, opts.target)).toEqual(original.big);
}

/**
 * How long each phase took, from the JSON lines' `ts`: from the line before its first line (the end of what came
 * before) to its last line, in order of appearance; with the stream's own split (pre-data, copy, post-data).
 */
function phaseTimes(m: Migration): string {
  const lines = m.lines.filter((l) => l.json);
  const spans = new Map<string, { from: number; to: number }>();
  lines.forEach((l, i) => {
    const phase = l.json!.phase;
    const t = Date.parse(l.json!.ts);
    if (!phase) return;
    const span = spans.get(phase);
    if (span) span.to = t; else spans.set(phase, { from: i > 0 ? Date.parse(lines[i - 1].json!.ts) : t, to: t });
  });
  const split = lines.map((l) => /\((pre-data [^)]*)\)/.exec(l.json!.msg)?.[1]).find(Boolean);
  return [...spans].map(([p, s]) => `${p} ${((s.to - s.from) / 1000).toFixed(1)} s${p === 'stream' && split ? ` (${split})` : ''}`).join(', ');
}

describe('silent network partitions between the runner and its servers', () => {
  it('dump mode: the source link cut in the middle of pg_dump fails the attempt within the bound; the retry dumps again', async () => {
    // given the source's link slowed to 20 Mbit/s, so dumping `big` (~50 MB) takes a while
    await partitionCase('dump, source cut during pg_dump', {
      mode: 'dump', side: 'source', phase: 'dump', target: 'big_dump_src', throttled: true, midway: true,
      running: () => runnerRuns(source, 'COPY %TO stdout%'),
    });
  }, CASE_MS);

  it('stream mode: the source link cut in the middle of the COPY stream fails the attempt within the bound; the retry streams again', async () => {
    // given the source's link slowed to 20 Mbit/s
    await partitionCase('stream, source cut during COPY', {
      mode: 'stream', side: 'source', phase: 'stream', target: 'big_stream_src', throttled: true, midway: true,
      running: () => runnerRuns(source, 'COPY %TO STDOUT%'),
    });
  }, CASE_MS);

  it('dump mode: the destination link cut while pg_restore loads data fails the attempt within the bound; the retry restores again', async () => {
    // given the link to the destination slowed to 20 Mbit/s, so pg_restore's COPY takes a while
    await partitionCase('dump, destination cut during pg_restore COPY', {
      mode: 'dump', side: 'destination', phase: 'restore', target: 'big_dump_dst', throttled: true, midway: true,
      running: () => runnerRuns(destination, 'COPY %FROM stdin%'),
    });
  }, CASE_MS);

  it('stream mode: the destination link cut during post-data (index builds after the copy) fails the attempt within the bound; the retry finishes', async () => {
    // given no throttle: the copy is quick, the six index builds on `items` (sorts on disk, 1 MB maintenance_work_mem) take seconds
    await partitionCase('stream, destination cut during post-data CREATE INDEX', {
      mode: 'stream', side: 'destination', phase: 'stream', target: 'big_stream_dst', throttled: false, midway: false,
      running: async (m) => m.lines.some((l) => l.json?.msg === 'post-data') && runnerRuns(destination, 'CREATE INDEX%'),
    });
  }, CASE_MS);

  it('a link that stays down through every retry fails the database clearly (network), leaves the source untouched; --resume converges', async () => {
    // given a stream of `big` over a slowed source link
    const target = 'big_down';
    const spec = writeSpec(target, 'big', target, { mode: 'stream', verbose: true });
    const unthrottle = await throttle(srcHost, 'from');
    const m = migrate(spec, join(work, target));
    let cut = 0;
    let code: number;
    try {
      // when the source link is cut during the COPY and stays down until the run has ended
      await until('the COPY stream at work', () => runnerRuns(source, 'COPY %TO STDOUT%'), m);
      srcHost.partition();
      cut = Date.now();
      code = await m.exited;
    } finally {
      srcHost.heal();
      await unthrottle();
    }
    const healed = Date.now();
    const first = m.lines.find(attemptFailed('stream'));
    measured.push(`link down for good (stream): first attempt reported ${first ? ((first.at - cut) / 1000).toFixed(1) : '-'} s `
      + `(${first?.json?.msg}), the run failed ${((healed - cut) / 1000).toFixed(1)} s after the partition`);
    console.log(measured[measured.length - 1]);

    // then it exits 1 with a failure naming the database, the phase and the network, in the output and the summary
    expect(code, m.text()).toBe(1);
    expect(first?.json?.msg, timeline(m, cut)).toMatch(/after network timeout/);
    const failure = m.lines.find((l) => l.json?.level === 'error' && l.json.database === 'big' && l.json.phase === 'stream' && /failed/.test(l.json.msg));
    expect(failure?.json?.msg, m.text()).toMatch(/network/i);
    expect(summaryOf(join(work, target)).databases[0]).toMatchObject({ name: 'big', status: 'failed', phase: 'stream', error: expect.stringMatching(/network/i) });
    // and once the link is back no session of the runner is left on the source within the bound, and the source is unchanged
    const sessions = () => source.query<{ s: string }>(`SELECT format('%s: %s %s', application_name, state, left(query, 30)) AS s
      FROM pg_stat_activity WHERE application_name LIKE 'db-migration%'`);
    const atHeal = await sessions();
    await until('no runner session left on the source', async () => (await sessions()).length === 0, undefined, 150_000);
    const gone = (Date.now() - healed) / 1000;
    measured.push(`link down for good: ${atHeal.length} runner sessions on the source after the heal (${atHeal.map((r) => r.s).join('; ')}), none ${gone.toFixed(1)} s after it`);
    console.log(measured[measured.length - 1]);
    expect.soft(gone, atHeal.map((r) => r.s).join('\n')).toBeLessThanOrEqual(NETWORK_TIMEOUT + SLACK);
    expect(await fingerprint(source, 'big')).toEqual(original.big);

    // when the operator runs it again with --resume
    const again = migrate(spec, join(work, `${target}-again`), ['--resume']);
    // then it converges: exit 0, the destination identical to the source
    expect(await again.exited, again.text()).toBe(0);
    expect(await fingerprint(destination, target)).toEqual(original.big);
  }, CASE_MS);

  it('a 100 ms round trip to both servers (delaying relays) only slows a many-tables migration, in stream and dump mode', async () => {
    // given relays adding 50 ms each way in front of the source and the destination
    const relays: DelayRelay[] = [];
    try {
      for (const s of [source, destination]) relays.push(await startDelayRelay({ target: { host: s.host, port: s.port }, delayMs: 50 }));
      const via = { source: { host: relays[0].host, port: relays[0].port }, destination: { host: relays[1].host, port: relays[1].port } };
      for (const mode of ['stream', 'dump'] as const) {
        // when `many` (24 tables with indexes and foreign keys) is migrated through them
        const target = `many_${mode}`;
        const started = Date.now();
        const m = migrate(writeSpec(target, 'many', target, { mode }, via), join(work, target));
        const code = await m.exited;
        measured.push(`100 ms round trip, ${mode} mode: ${((Date.now() - started) / 1000).toFixed(1)} s in all; ${phaseTimes(m)}`);
        console.log(measured[measured.length - 1]);
        // then it completes, identical to the source
        expect(code, m.text()).toBe(0);
        expect(await fingerprint(destination, target)).toEqual(original.many);
      }
    } finally {
      await Promise.all(relays.map((r) => r.close()));
    }
  }, CASE_MS * 2);
});
