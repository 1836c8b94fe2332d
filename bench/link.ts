/**
 * `--link RATE`: the source and the destination servers each in a network namespace of their own, joined to the
 * root namespace (where the harness, the runner and the hand-run tools run, as a pod on a third node would) by a
 * veth pair out of 198.18.0.0/15 (test/support/netns.ts's createHost and startPgServerIn). Each veth end gets a
 * `tc` token bucket (tbf) at RATE as its root qdisc, so every packet leaving either end of either link is held to
 * RATE: the runner-to-server path is RATE each way, and a byte going from the source to the destination crosses
 * two links (source → root, root → destination), each at RATE. No netem, no added delay.
 *
 * The namespaces (and the servers in them) are removed by the harness's clean-up, and by netns.ts's own exit and
 * signal hooks; namespaces that a killed earlier run left are removed first (cleanupStale).
 */
import { execFileSync } from 'node:child_process';
import { cleanupStale, createHost, listLinks, startPgServerIn, type Host } from '../test/support/netns';
import type { PgServer } from '../test/support/pg-server';

export interface LinkSpec {
  /** As given to tc, e.g. "200mbit". */
  readonly rate: string;
  readonly bitsPerSecond: number;
  /** tbf bucket size in bytes (4 ms at the rate, at least 64 KiB so that a GSO super-packet fits). */
  readonly burstBytes: number;
  /** tbf queue limit expressed as the longest a packet may wait. */
  readonly latencyMs: number;
}

export interface LinkInfo extends LinkSpec {
  readonly kind: 'veth + tc tbf, source and destination in network namespaces of their own';
  readonly source: { readonly namespace: string; readonly address: string };
  readonly destination: { readonly namespace: string; readonly address: string };
  /** `tc qdisc show` of the four shaped interfaces at the start, for the record. */
  readonly qdiscs: readonly string[];
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };

/** "1gbit", "200mbit", "500kbit" (tc's decimal units); undefined when not such a rate. */
export function parseLinkRate(text: string): LinkSpec | undefined {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)bit$/i.exec(text.trim());
  if (!m) return undefined;
  const bitsPerSecond = Number(m[1]) * UNITS[m[2].toLowerCase()];
  if (!(bitsPerSecond >= 1e6) || bitsPerSecond > 100e9) return undefined;
  return {
    rate: text.trim().toLowerCase(),
    bitsPerSecond,
    burstBytes: Math.max(64 * 1024, Math.round(bitsPerSecond / 8 / 250)),
    latencyMs: 50,
  };
}

/** The host end of a createHost link: netns.ts names the pair dbm<pid>r<n> (root) and dbm<pid>h<n> (namespace). */
const peerOf = (host: Host) => host.link.replace(/r(\d+)$/, 'h$1');

function tbf(spec: LinkSpec, dev: string, ns?: string): string {
  const args = ['qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', spec.rate, 'burst', String(spec.burstBytes), 'latency', `${spec.latencyMs}ms`];
  const run = (a: string[]) => execFileSync(ns ? 'ip' : 'tc', ns ? ['netns', 'exec', ns, 'tc', ...a] : a, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  run(args);
  return `${ns ? `${ns}: ` : ''}${run(['qdisc', 'show', 'dev', dev]).trim()}`;
}

export interface LinkedServers {
  readonly source: PgServer;
  readonly destination: PgServer;
  readonly info: LinkInfo;
}

/**
 * Creates the two namespaces, shapes both ends of both links and starts a server in each. `onResource` is called
 * for each namespace and server as soon as it exists (the caller's clean-up; a namespace before its server).
 */
export async function startLinkedServers(
  spec: LinkSpec,
  settings: { source: Record<string, string>; destination: Record<string, string> },
  onResource: (what: string, destroy: () => Promise<void> | void) => void,
): Promise<LinkedServers> {
  cleanupStale();
  const hosts: Host[] = [];
  for (const label of ['bench_src', 'bench_dst']) {
    const h = createHost(label);
    onResource(`network namespace ${h.ns}`, () => h.destroy());
    hosts.push(h);
  }
  const [srcHost, dstHost] = hosts;
  const qdiscs: string[] = [];
  for (const h of hosts) {
    if (!listLinks().includes(h.link)) throw new Error(`veth ${h.link} of ${h.ns} not found`);
    qdiscs.push(tbf(spec, h.link), tbf(spec, peerOf(h), h.ns));
  }
  const started = await Promise.allSettled([
    startPgServerIn(srcHost, { settings: settings.source }),
    startPgServerIn(dstHost, { settings: settings.destination }),
  ]);
  for (const s of started) if (s.status === 'fulfilled') onResource(`server ${s.value.host}:${s.value.port}`, () => s.value.destroy());
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw new Error(`cannot start a server in a namespace: ${(failed.reason as Error).message}`);
  const [source, destination] = started.map((s) => (s as PromiseFulfilledResult<PgServer>).value);
  return {
    source, destination,
    info: {
      ...spec,
      kind: 'veth + tc tbf, source and destination in network namespaces of their own',
      source: { namespace: srcHost.ns, address: srcHost.address },
      destination: { namespace: dstHost.ns, address: dstHost.address },
      qdiscs,
    },
  };
}
