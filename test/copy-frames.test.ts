/**
 * The COPY frame relay (src/runner/stream/copy-frames.ts) against a real PostgreSQL 15 server, with the
 * source connection going through a TCP proxy that re-cuts the server's bytes: socket reads end exactly at a
 * frame's end, inside a header and inside a body, as they may on a slow or TLS link. Rows larger
 * than a socket read, NULLs, text and binary format; an error in the middle of the source's COPY and one on the
 * destination leave both sessions usable and nothing stored.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyInFrames, CopyOutFrames } from '../src/runner/stream/copy-frames';
import { startPgServer, type PgServer } from './support/pg-server';

const ROWS = `
  CREATE TABLE items (id int PRIMARY KEY, label text, blob bytea, amount numeric, tags text[]);
  INSERT INTO items SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'item ' || g || repeat(' ü', g % 13) END,
    CASE WHEN g % 300 = 0 THEN decode(repeat('ab', 100000 + g), 'hex') WHEN g % 3 = 0 THEN NULL ELSE int4send(g) END,
    g / 3.0, ARRAY['a' || g, NULL]
  FROM generate_series(1, 3000) g;
`;

/**
 * A proxy that re-cuts the server-to-client bytes: message by message (once the startup is done), a message is
 * written whole and followed by a pause (a read then ends exactly at a frame's end), written whole with no pause
 * (it joins the next one), or cut into pieces of 1..40 bytes with pauses between some (reads end inside
 * headers and bodies).
 */
async function choppingProxy(target: PgServer): Promise<{ port: number; server: Server; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  let seed = 7;
  const rand = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed; };
  const pause = () => new Promise((r) => setImmediate(r));
  const server = createServer((client) => {
    const upstream = netConnect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    let pending = Buffer.alloc(0);
    let queue = Promise.resolve();
    const send = async (msg: Buffer) => {
      const how = rand() % 3;
      if (how === 0 || how === 1) {
        if (!client.destroyed) client.write(msg);
        if (how === 0) await pause();
        return;
      }
      for (let i = 0; i < msg.length;) {
        const n = 1 + (rand() % 40);
        if (!client.destroyed) client.write(msg.subarray(i, i + n));
        i += n;
        if (rand() % 4 === 0) await pause();
      }
    };
    upstream.on('data', (data: Buffer) => {
      upstream.pause();
      queue = queue.then(async () => {
        pending = Buffer.concat([pending, data]);
        // Whole messages: code byte + int32 length (which counts itself).
        while (pending.length >= 5 && pending.length >= 1 + pending.readUInt32BE(1)) {
          const len = 1 + pending.readUInt32BE(1);
          await send(pending.subarray(0, len));
          pending = pending.subarray(len);
        }
        upstream.resume();
      });
    });
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as { port: number }).port, server, sockets };
}

async function clientFor(pg: PgServer, database: string, port = pg.port): Promise<Client> {
  const c = new Client({ host: pg.host, port, user: pg.superuser, password: pg.superPassword, database });
  await c.connect();
  return c;
}

async function digest(c: Client, table: string): Promise<{ n: number; h: string }> {
  const { rows } = await c.query<{ n: number; h: string }>(
    `SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h FROM ${table} t`);
  return rows[0];
}

describe('COPY frame relay', () => {
  let pg: PgServer;
  let proxy: Awaited<ReturnType<typeof choppingProxy>>;
  let source: Client;
  let destination: Client;

  beforeAll(async () => {
    pg = await startPgServer({ name: 'frames' });
    await pg.query('CREATE DATABASE src');
    await pg.query('CREATE DATABASE dst');
    await pg.query(ROWS, 'src');
    await pg.query(`CREATE TABLE items (id int PRIMARY KEY, label text, blob bytea, amount numeric, tags text[]);
      CREATE TABLE strict_items (id int PRIMARY KEY, label text NOT NULL, blob bytea, amount numeric, tags text[])`, 'dst');
    proxy = await choppingProxy(pg);
    source = await clientFor(pg, 'src', proxy.port);
    destination = await clientFor(pg, 'dst');
  }, 120_000);

  afterAll(async () => {
    await source?.end().catch(() => undefined);
    await destination?.end().catch(() => undefined);
    for (const s of proxy?.sockets ?? []) s.destroy();
    proxy?.server.close();
    await pg?.destroy();
  });

  for (const format of ['binary', 'text'] as const) {
    it(`relays every row in ${format} format through reads cut at every boundary`, async () => {
      await destination.query('TRUNCATE items');
      let reported = 0;
      const out = source.query(new CopyOutFrames(`COPY items TO STDOUT (FORMAT ${format})`, (n) => { reported += n; }));
      const sink = destination.query(new CopyInFrames(`COPY items FROM STDIN (FORMAT ${format})`));
      await pipeline(out, sink);
      expect(await out.done).toBe(3000);
      expect(sink.rowCount).toBe(3000);
      expect(out.payloadBytes).toBe(reported);
      expect(out.payloadBytes).toBeGreaterThan(10 * 100_000); // the 10 rows of ~100 KB each are in it
      expect(await digest(destination, 'items')).toEqual(await digest(source, 'items'));
      // Both sessions are back in node-postgres' hands.
      expect((await source.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect((await destination.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    }, 120_000);
  }

  it('fails with the source error when the source COPY breaks midway; nothing is stored, both sessions stay usable', async () => {
    await destination.query('TRUNCATE items');
    await destination.query('BEGIN');
    const out = source.query(new CopyOutFrames(
      'COPY (SELECT id, label, blob, amount / (id - 2500), tags FROM items ORDER BY id) TO STDOUT (FORMAT binary)'));
    const sink = destination.query(new CopyInFrames('COPY items FROM STDIN (FORMAT binary)'));
    await expect(pipeline(out, sink)).rejects.toThrow(/division by zero/);
    await expect(out.done).rejects.toThrow(/division by zero/);
    await destination.query('ROLLBACK');
    expect(await digest(destination, 'items')).toEqual({ n: 0, h: await emptyMd5(destination) });
    expect((await source.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  }, 120_000);

  it('fails with the destination error when the destination rejects a row; the destination session stays usable', async () => {
    const fresh = await clientFor(pg, 'src', proxy.port);
    try {
      await destination.query('BEGIN');
      const out = fresh.query(new CopyOutFrames('COPY (SELECT * FROM items ORDER BY id) TO STDOUT (FORMAT binary)'));
      const sink = destination.query(new CopyInFrames('COPY strict_items FROM STDIN (FORMAT binary)'));
      await expect(pipeline(out, sink)).rejects.toThrow(/null value in column "label"/);
      await destination.query('ROLLBACK');
      expect((await destination.query('SELECT count(*)::int AS n FROM strict_items')).rows).toEqual([{ n: 0 }]);
    } finally {
      // The source is still sending its COPY: the session is dropped, as the engine does on failure.
      await fresh.end().catch(() => undefined);
    }
  }, 120_000);
});

async function emptyMd5(c: Client): Promise<string> {
  return (await c.query<{ h: string }>("SELECT md5('') AS h")).rows[0].h;
}
