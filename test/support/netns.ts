/**
 * Network namespaces for partition tests (needs root and `ip`). `createHost` makes a namespace joined to the root
 * namespace (where the tests and the runner run) by a veth pair, a /30 out of 198.18.0.0/15 (the benchmarking block,
 * never anything else): `.1` on the root end, `.2` on the host end. `partition()` drops all traffic between the two
 * silently (no RST, no ICMP), `heal()` restores it. `startPgServerIn` runs a throwaway PostgreSQL server (like
 * pg-server.ts's) inside a host; `startDelayRelay` is a TCP relay in the root namespace adding latency.
 *
 * Where the partition lives: both blackhole effects are in the host's namespace. A blackhole route drops only
 * packets being routed; a packet generated locally that hits one fails the sender's syscall instead (connect()
 * gets EINVAL at once), so a route in the root namespace would not be silent for the runner. In the namespace,
 * `blackhole <rootAddress>/32` stops everything the host sends to the root side (the host's own stack sees the
 * error, nothing leaves), and because the host end has strict reverse-path filtering (rp_filter=1, set at
 * creation) every packet arriving from the root side fails the source check against that blackhole and is
 * dropped without an ICMP. The root namespace sees plain silence in both directions. Both ends have permanent
 * neighbour (ARP) entries for each other: strict rp_filter also stops the host answering ARP, and a failed neighbour
 * lookup would make the root's kernel report EHOSTUNREACH to the socket, which a partition behind a router never does.
 *
 * Names: namespaces `dbmns-<pid>-<n>-<label>`, root-side veth `dbm<pid>r<n>`, PostgreSQL dirs `$TMPDIR/dbm-dbmns-<pid>-…`.
 * Everything of this process is removed on destroy(), on exit and on SIGINT/SIGTERM/SIGHUP; `cleanupStale()` removes
 * what dead processes (e.g. SIGKILLed workers) left behind.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPgServer, type PgServer } from './pg-server';

const run = promisify(execFile);
const NS_RE = /^dbmns-(\d+)-(\d+)-/;
const LINK_RE = /^dbm(\d+)r(\d+)$/;
const DIR_RE = /^dbm-dbmns-(\d+)-/;
const BLOCK = (198 << 24 >>> 0) + (18 << 16); // 198.18.0.0/15: 32768 /30s
const ipStr = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
const ipNum = (s: string) => s.split('.').reduce((a, p) => a * 256 + Number(p), 0);

export interface Host {
  /** Namespace name (for `ip netns exec`). */
  readonly ns: string;
  /** The host's address (its veth end, inside the namespace). */
  readonly address: string;
  /** The root namespace's address on the veth pair (what the host sees connections come from). */
  readonly rootAddress: string;
  /** Root-side veth interface name. */
  readonly link: string;
  /** Runs a command inside the namespace. */
  exec(cmd: string, args?: string[]): Promise<{ stdout: string; stderr: string }>;
  /** Silently drops all traffic between the root namespace and the host (both directions). */
  partition(): void;
  heal(): void;
  /** Kills what still runs in the namespace, deletes it, its veth pair and its PostgreSQL dirs. */
  destroy(): void;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}
const quiet = (f: () => unknown) => { try { f(); } catch { /* already gone */ } };

export function listNamespaces(): string[] {
  return ip(['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}
export function listLinks(): string[] {
  return ip(['-o', 'link', 'show']).split('\n').map((l) => l.split(': ')[1]?.split('@')[0]).filter((s): s is string => !!s);
}

/** Removes the namespaces (and what runs in them), veths and PostgreSQL dirs whose names carry `pid`. */
function removeOwnedBy(pid: number, only?: string): void {
  const mine = (re: RegExp, name: string) => { const m = re.exec(name); return !!m && Number(m[1]) === pid; };
  for (const ns of listNamespaces().filter((n) => mine(NS_RE, n) && (!only || n === only))) {
    let pids: string[] = [];
    quiet(() => { pids = ip(['netns', 'pids', ns]).split('\n').filter(Boolean); });
    for (const p of pids) quiet(() => process.kill(Number(p), 'SIGKILL'));
    quiet(() => ip(['-n', ns, 'link', 'del', `dbm${pid}h${ns.split('-')[2]}`]));
    quiet(() => ip(['netns', 'del', ns]));
  }
  for (const link of listLinks().filter((l) => mine(LINK_RE, l) && (!only || only.startsWith(`dbmns-${pid}-${LINK_RE.exec(l)![2]}-`)))) {
    quiet(() => ip(['link', 'del', link]));
  }
  for (const dir of readdirSync(tmpdir()).filter((d) => mine(DIR_RE, d) && (!only || d.startsWith(`dbm-${only}-`)))) {
    rmSync(join(tmpdir(), dir), { recursive: true, force: true });
  }
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; } };

/** Removes what processes that no longer exist left behind (namespaces, veths, PostgreSQL dirs). */
export function cleanupStale(): void {
  const pids = new Set<number>();
  for (const [re, names] of [[NS_RE, listNamespaces()], [LINK_RE, listLinks()], [DIR_RE, readdirSync(tmpdir())]] as const) {
    for (const n of names) { const m = re.exec(n); if (m) pids.add(Number(m[1])); }
  }
  for (const pid of pids) if (pid !== process.pid && !alive(pid)) removeOwnedBy(pid);
}

let counter = 0;
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => removeOwnedBy(process.pid));
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      removeOwnedBy(process.pid);
      if (process.listenerCount(sig) === 1) { process.removeListener(sig, onSignal); process.kill(process.pid, sig); }
    };
    process.on(sig, onSignal);
  }
}

/** A /30 of 198.18.0.0/15 not in use by any address of the root namespace. */
function freeBlock(): number {
  const used = new Set(ip(['-4', '-o', 'addr', 'show']).split('\n')
    .map((l) => /inet (198\.1[89]\.\d+\.\d+)/.exec(l)?.[1]).filter((a): a is string => !!a)
    .map((a) => (ipNum(a) - BLOCK) >>> 2));
  const start = (process.pid * 61 + counter * 7) % 32767;
  for (let i = 0; i < 32767; i++) {
    const b = 1 + (start + i) % 32767;
    if (!used.has(b)) return BLOCK + b * 4;
  }
  throw new Error('no free /30 in 198.18.0.0/15');
}

export function createHost(label = 'host'): Host {
  hookExit();
  const n = counter++;
  const ns = `dbmns-${process.pid}-${n}-${label.replace(/[^a-zA-Z0-9_]/g, '_')}`;
  const link = `dbm${process.pid}r${n}`;
  const peer = `dbm${process.pid}h${n}`;
  const base = freeBlock();
  const rootAddress = ipStr(base + 1);
  const address = ipStr(base + 2);
  const mac = (end: number) => `02:db:${[24, 16, 8, 0].map((sh) => ((base + end) >>> sh & 255).toString(16).padStart(2, '0')).join(':')}`;
  const inNs = (args: string[]) => ip(['-n', ns, ...args]);
  try {
    ip(['netns', 'add', ns]);
    ip(['link', 'add', link, 'address', mac(1), 'type', 'veth', 'peer', 'name', peer, 'address', mac(2), 'netns', ns]);
    ip(['addr', 'add', `${rootAddress}/30`, 'dev', link]);
    ip(['link', 'set', link, 'up']);
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=1', `net.ipv4.conf.${peer}.rp_filter=1`]);
    inNs(['addr', 'add', `${address}/30`, 'dev', peer]);
    inNs(['link', 'set', peer, 'up']);
    inNs(['link', 'set', 'lo', 'up']);
    ip(['neigh', 'replace', address, 'lladdr', mac(2), 'dev', link, 'nud', 'permanent']);
    inNs(['neigh', 'replace', rootAddress, 'lladdr', mac(1), 'dev', peer, 'nud', 'permanent']);
  } catch (e) {
    removeOwnedBy(process.pid, ns);
    throw e;
  }
  return {
    ns, address, rootAddress, link,
    exec: (cmd, args = []) => run('ip', ['netns', 'exec', ns, cmd, ...args], { maxBuffer: 64 * 1024 * 1024 }),
    partition() { inNs(['route', 'replace', 'blackhole', `${rootAddress}/32`]); },
    heal() { quiet(() => inNs(['route', 'del', 'blackhole', `${rootAddress}/32`])); },
    destroy() { removeOwnedBy(process.pid, ns); },
  };
}

export interface NsPgServerOptions {
  /** Extra postgresql.conf settings (values as written in the file). */
  readonly settings?: Record<string, string>;
  /** @default 5432 (the namespace has its own ports) */
  readonly port?: number;
}

/** pg-server.ts's startPgServer, but the server runs inside `host` listening on `host.address`, and accepts password logins from the root side. */
export async function startPgServerIn(host: Host, opts: NsPgServerOptions = {}): Promise<PgServer> {
  // pg-server.ts's server, with pg_ctl run inside the namespace and logins admitted from the root namespace's end of the link.
  return startPgServer({
    name: host.ns, host: host.address, port: opts.port ?? 5432, settings: opts.settings, clientAddress: `${host.rootAddress}/32`,
    wrapServerCommand: (cmd, args) => ['ip', ['netns', 'exec', host.ns, cmd, ...args]],
  });
}


export interface DelayRelay {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay in the root namespace: each connection to `listen` is forwarded to `target`, and every chunk, in each
 * direction, is written on `delayMs` after it arrived (order kept). Back-pressure: a side stops being read while more
 * than `maxQueuedBytes` wait for their time or the other side does not drain. Ends and resets are passed on.
 */
export async function startDelayRelay(opts: {
  listen?: { host?: string; port?: number }; target: { host: string; port: number }; delayMs: number; maxQueuedBytes?: number;
}): Promise<DelayRelay> {
  const max = opts.maxQueuedBytes ?? 4 * 1024 * 1024;
  const sockets = new Set<Socket>();
  const delayed = (src: Socket, dst: Socket) => {
    const queue: { chunk: Buffer; due: number }[] = [];
    let queued = 0, ended = false, timer: NodeJS.Timeout | undefined, draining = false;
    const pump = () => {
      if (timer || draining) return;
      while (queue.length) {
        const wait = queue[0].due - Date.now();
        if (wait > 0) { timer = setTimeout(() => { timer = undefined; pump(); }, wait); return; }
        const { chunk } = queue.shift()!;
        queued -= chunk.length;
        if (!dst.write(chunk)) { draining = true; dst.once('drain', () => { draining = false; pump(); }); return; }
      }
      if (queued <= max) src.resume();
      if (ended) dst.end();
    };
    src.on('data', (chunk: Buffer) => {
      queue.push({ chunk, due: Date.now() + opts.delayMs });
      queued += chunk.length;
      if (queued > max) src.pause();
      pump();
    });
    src.on('end', () => { ended = true; pump(); });
    src.on('close', () => { if (timer) clearTimeout(timer); });
  };
  const server = createServer({ allowHalfOpen: true }, (client) => {
    const upstream = connect({ ...opts.target, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => sockets.delete(s));
    }
    delayed(client, upstream);
    delayed(upstream, client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen?.port ?? 0, opts.listen?.host ?? '127.0.0.1', resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    host: address, port,
    close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}
