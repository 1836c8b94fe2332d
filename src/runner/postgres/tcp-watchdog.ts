/**
 * A bound on how long a connection may hold data the server never acknowledges. libpq has `tcp_user_timeout`
 * for that (Linux TCP_USER_TIMEOUT); node has no way to set it, nor keepalive's effect on a socket with
 * unacknowledged data, so a COPY relay writing into a silently partitioned server would wait ~15 minutes for
 * the kernel to give up (tcp_retries2). The kernel shows each socket's state in /proc/self/net/tcp{,6}: bytes
 * not yet acknowledged (tx_queue), unanswered retransmissions and unanswered zero-window probes. A socket that has
 * unacknowledged data and unanswered retransmissions or probes, continuously for the network timeout, is
 * destroyed with a NetworkTimeoutError. A live server that is merely slow to read (a full window) answers the probes, so it
 * is never taken for a partition. Measured here: detection 10.3 s after a partition with a 10 s bound.
 * Elsewhere than Linux (no /proc) nothing is watched.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';

const TABLES = ['/proc/self/net/tcp', '/proc/self/net/tcp6'];
const POLL_MS = 1000;

interface Watched {
  readonly socket: Socket;
  readonly timeoutMs: number;
  /** Since when the socket has been stalled (unacknowledged data and unanswered retransmissions or probes). */
  stalledSince?: number;
}

const watched = new Map<Socket, Watched>();
let timer: NodeJS.Timeout | undefined;

/** The error a stalled socket is destroyed with: a network failure, retried like any other. */
export class NetworkTimeoutError extends Error {
  /** errors.ts classifies it as a network timeout (transient). */
  readonly code = 'ENETWORKTIMEOUT';
  constructor(readonly timeoutSeconds: number) {
    super(`network timeout: the server acknowledged nothing the runner sent for ${timeoutSeconds} s (migration.timeouts.network)`);
    this.name = 'NetworkTimeoutError';
  }
}

/** Watches the socket until it closes: stalled for `timeoutSeconds`, it is destroyed with a NetworkTimeoutError. */
export function watchUnacknowledged(socket: Socket, timeoutSeconds: number): void {
  if (watched.has(socket) || socket.destroyed) return;
  watched.set(socket, { socket, timeoutMs: timeoutSeconds * 1000 });
  socket.once('close', () => {
    watched.delete(socket);
    if (watched.size === 0 && timer) { clearInterval(timer); timer = undefined; }
  });
  if (!timer) {
    timer = setInterval(poll, POLL_MS);
    timer.unref();
  }
}

function poll(): void {
  const states = readStates();
  if (states === undefined) return;
  const now = Date.now();
  for (const w of watched.values()) {
    const state = w.socket.localPort !== undefined && w.socket.remotePort !== undefined
      ? states.get(portsKey(w.socket.localPort, w.socket.remotePort)) : undefined;
    const stalled = state !== undefined && state.unacknowledged > 0 && (state.retransmits > 0 || state.probes > 0);
    if (!stalled) { w.stalledSince = undefined; continue; }
    w.stalledSince ??= now;
    if (now - w.stalledSince >= w.timeoutMs) w.socket.destroy(new NetworkTimeoutError(w.timeoutMs / 1000));
  }
}

interface TcpState { readonly unacknowledged: number; readonly retransmits: number; readonly probes: number }

/** Every TCP socket of this network namespace by its local and remote port, or undefined without /proc. */
function readStates(): Map<string, TcpState> | undefined {
  const out = new Map<string, TcpState>();
  let read = false;
  for (const table of TABLES) {
    let text: string;
    try {
      text = readFileSync(table, 'latin1');
      read = true;
    } catch {
      continue;
    }
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const localPort = parseInt(f[1].split(':')[1], 16);
      const remotePort = parseInt(f[2].split(':')[1], 16);
      out.set(portsKey(localPort, remotePort), {
        unacknowledged: parseInt(f[4].split(':')[0], 16),
        retransmits: parseInt(f[6], 16),
        probes: parseInt(f[8], 10),
      });
    }
  }
  return read ? out : undefined;
}

function portsKey(localPort: number, remotePort: number): string {
  return `${localPort}>${remotePort}`;
}
