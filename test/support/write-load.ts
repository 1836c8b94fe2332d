/**
 * A steady write load on a source database for online-mode tests: clients that insert into a table with a
 * sequence, update and delete rows, in short transactions, until stopped. Writes refused because the database
 * became read-only (the cutover's fence) or because the session was ended are counted, not thrown: that is
 * exactly what the fence does to writers.
 */
import { Client } from 'pg';
import type { PgServer } from './pg-server';

export interface WriteLoad {
  /** Transactions committed so far. */
  committed(): number;
  /** Writes refused by the fence (read-only transaction, session ended). */
  refused(): number;
  stop(): Promise<void>;
}

export interface LoadStatement {
  readonly sql: string;
  readonly params?: () => unknown[];
}

/** Runs `statements` round robin on `clients` sessions, each in its own transaction, pausing `pauseMs` between. */
export function startWriteLoad(server: PgServer, database: string, statements: readonly LoadStatement[], opts: { clients?: number; pauseMs?: number } = {}): WriteLoad {
  let running = true;
  let committed = 0;
  let refused = 0;
  const loop = async (offset: number) => {
    let client: Client | undefined;
    let i = offset;
    while (running) {
      try {
        if (!client) {
          client = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database });
          client.on('error', () => undefined);
          await client.connect();
        }
        const s = statements[i++ % statements.length];
        await client.query(s.sql, s.params?.());
        committed++;
      } catch (err) {
        const code = (err as { code?: string }).code;
        // 25006: read-only transaction; 57P0x: terminated, shutting down, starting up; 08xxx and no code: the connection.
        const sqlstate = code && /^[0-9A-Z]{5}$/.test(code) ? code : undefined; // else a socket error (ECONNREFUSED...)
        if (!sqlstate || sqlstate === '25006' || sqlstate.startsWith('57P') || sqlstate.startsWith('08')) refused++;
        else if (running) throw err;
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, opts.pauseMs ?? 5));
    }
    await client?.end().catch(() => undefined);
  };
  const loops = Array.from({ length: opts.clients ?? 2 }, (_, k) => loop(k));
  const all = Promise.all(loops);
  all.catch(() => undefined);
  return {
    committed: () => committed,
    refused: () => refused,
    stop: async () => { running = false; await all; },
  };
}
