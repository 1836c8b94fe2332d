/**
 * The network-namespace harness (test/support/netns.ts) for real: a PostgreSQL server in a namespace is reachable
 * from the root namespace; a partition is silent (a new connection neither connects nor gets a RST, an idle open
 * connection gets no error) and heals; the delay relay adds its latency; nothing is left behind, not even by a
 * process killed with SIGKILL (cleanupStale) or SIGTERM (exit hooks). Needs root.
 */
import { execFile, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupStale, createHost, listLinks, listNamespaces, startDelayRelay, startPgServerIn, type Host } from './support/netns';
import { PG_BIN, type PgServer } from './support/pg-server';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The namespace's SNMP counters ("TcpExt.IPReversePathFilter", "Icmp.OutMsgs", ...). */
async function counters(host: Host): Promise<Record<string, number>> {
  const { stdout } = await host.exec('cat', ['/proc/net/snmp', '/proc/net/netstat']);
  const lines = stdout.trim().split('\n').map((l) => l.split(/\s+/));
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) lines[i].slice(1).forEach((k, j) => { out[`${lines[i][0].slice(0, -1)}.${k}`] = Number(lines[i + 1][j + 1]); });
  return out;
}

describe('network namespaces', () => {
  let host: Host;
  let pg: PgServer;
  const client = (extra: Record<string, unknown> = {}) =>
    new Client({ host: pg.host, port: pg.port, user: pg.superuser, password: pg.superPassword, database: 'postgres', ...extra });
  const psql = (sql: string, conninfo = '') => run(join(PG_BIN, 'psql'), ['-X', '-At', '-c', sql,
    `host=${pg.host} port=${pg.port} user=${pg.superuser} dbname=postgres sslmode=disable ${conninfo}`], { env: { ...process.env, PGPASSWORD: pg.superPassword } });

  beforeAll(async () => {
    cleanupStale();
    host = createHost('test');
    pg = await startPgServerIn(host);
  });
  afterAll(async () => {
    await pg?.destroy();
    host?.destroy();
  });

  it('serves PostgreSQL from inside the namespace to psql and pg in the root namespace', async () => {
    expect(host.address).toMatch(/^198\.1[89]\./);
    expect(host.rootAddress).toMatch(/^198\.1[89]\./);
    expect(listNamespaces()).toContain(host.ns);
    expect((await psql('SELECT inet_server_addr()')).stdout.trim()).toBe(host.address);
    const c = client();
    await c.connect();
    const { rows } = await c.query('SELECT host(inet_client_addr()) AS addr');
    expect(rows[0].addr).toBe(host.rootAddress);
    await c.end();
    // The server really runs in the namespace: it is not listening in the root namespace.
    const { stdout } = await host.exec('ss', ['-Htln']);
    expect(stdout).toContain(`${host.address}:${pg.port}`);
  });

  it('partitions silently and heals', async () => {
    const idle = client();
    await idle.connect();
    const idleErrors: Error[] = [];
    idle.on('error', (e) => idleErrors.push(e));
    host.partition();
    const before = await counters(host); // after: a delayed ACK sent just before the partition may still arrive

    try {
      // A raw connect: neither connected nor refused/reset after 3 s, just waiting for a SYN-ACK.
      const sock = connect({ host: pg.host, port: pg.port });
      const events: string[] = [];
      sock.on('connect', () => events.push('connect'));
      sock.on('error', (e) => events.push(`error ${e.message}`));
      const pgAttempt = client({ connectionTimeoutMillis: 2000 }).connect().then(() => 'connected', (e: Error) => e.message);
      const psqlAttempt = psql('SELECT 1', 'connect_timeout=2').then(() => 'connected', (e: { stderr: string }) => e.stderr);
      expect(await pgAttempt).toMatch(/timeout/i);
      expect(await psqlAttempt).toMatch(/timeout expired/);
      await sleep(1000); // the raw connect has now waited 3 s
      expect(events).toEqual([]);
      expect(sock.readyState).toBe('opening');
      sock.destroy();
      expect(idleErrors).toEqual([]);
      // The host's stack saw none of it (dropped by the reverse-path check) and sent no ICMP.
      const after = await counters(host);
      expect(after['TcpExt.IPReversePathFilter'] - before['TcpExt.IPReversePathFilter']).toBeGreaterThanOrEqual(3);
      expect(after['Tcp.InSegs']).toBe(before['Tcp.InSegs']);
      expect(after['Icmp.OutMsgs']).toBe(before['Icmp.OutMsgs']);
    } finally {
      host.heal();
    }
    const { rows } = await idle.query('SELECT 42 AS answer');
    expect(rows[0].answer).toBe(42);
    expect(idleErrors).toEqual([]);
    await idle.end();
  });

  it('delays every round trip through the relay, in order', async () => {
    const delayMs = 150;
    const relay = await startDelayRelay({ target: { host: pg.host, port: pg.port }, delayMs });
    const direct = client();
    const delayed = client({ host: relay.host, port: relay.port });
    await Promise.all([direct.connect(), delayed.connect()]);
    const roundTrip = async (c: Client) => {
      const times: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await c.query('SELECT 1');
        times.push(performance.now() - t0);
      }
      return Math.min(...times);
    };
    const [viaRelay, straight] = [await roundTrip(delayed), await roundTrip(direct)];
    expect(viaRelay).toBeGreaterThanOrEqual(2 * delayMs);
    expect(viaRelay).toBeLessThan(2 * delayMs + 100);
    expect(straight).toBeLessThan(delayMs / 5);
    // Bulk data (several MB, many chunks) arrives whole and in order.
    const big = "SELECT string_agg(i::text, ',') AS s FROM generate_series(1, 1000000) i";
    const [a, b] = await Promise.all([direct.query(big), delayed.query(big)]);
    expect(b.rows[0].s.length).toBeGreaterThan(6_000_000);
    expect(b.rows[0].s === a.rows[0].s).toBe(true);
    await Promise.all([direct.end(), delayed.end()]);
    await relay.close();
  });

  it('leaves nothing behind: destroy(), SIGTERM, and cleanupStale() after SIGKILL', async () => {
    const other = createHost('gone');
    expect(listNamespaces()).toContain(other.ns);
    expect(listLinks()).toContain(other.link);
    other.destroy();
    expect(listNamespaces()).not.toContain(other.ns);
    expect(listLinks()).not.toContain(other.link);

    // A child process creates a host and waits; it is killed.
    const child = async (signal: NodeJS.Signals) => {
      const script = `const n = require(${JSON.stringify(join(__dirname, 'support/netns.ts'))}); const h = n.createHost('child');
        console.log(JSON.stringify({ ns: h.ns, link: h.link })); setInterval(() => {}, 1000);`;
      const p = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], { cwd: join(__dirname, '..'), stdio: ['ignore', 'pipe', 'inherit'] });
      const made = await new Promise<{ ns: string; link: string }>((resolve, reject) => {
        p.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString())));
        p.once('exit', (code) => reject(new Error(`child exited ${code}`)));
      });
      expect(listNamespaces()).toContain(made.ns);
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
      return made;
    };
    const termed = await child('SIGTERM');
    expect(listNamespaces()).not.toContain(termed.ns);
    expect(listLinks()).not.toContain(termed.link);

    const killed = await child('SIGKILL');
    expect(listNamespaces()).toContain(killed.ns);
    expect(listLinks()).toContain(killed.link);
    cleanupStale();
    expect(listNamespaces()).not.toContain(killed.ns);
    expect(listLinks()).not.toContain(killed.link);
  });
});
