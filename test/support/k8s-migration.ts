/**
 * What an operator does around the cluster in the end-to-end suite, with the project's own commands: write
 * migration.yaml, `npm run synth -- --spec FILE --out DIR/dist` (a kustomization.yaml beside dist/, as at the
 * repository's root), create the password Secret with kubectl, follow `kubectl logs -f`. Also the PostgreSQL servers
 * the pods reach: on the host, listening on the pod network's gateway too.
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { clusterReport, KUBECONFIG, kubectlOk, POD_GATEWAY, POD_NETWORK, run } from './k8s-cluster';
import { startPgServer, type PgServer, type PgServerOptions } from './pg-server';
import { REPO } from './repo';

/** A throwaway server (pg-server.ts) that pods reach at POD_GATEWAY:port; the tests use 127.0.0.1. */
export function startPodReachableServer(name: string, opts: PgServerOptions = {}): Promise<PgServer> {
  return startPgServer({ ...opts, name, alsoListen: { addresses: [POD_GATEWAY], clients: [POD_NETWORK] } });
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface SpecOptions {
  readonly name: string;
  readonly namespace: string;
  readonly source: Pick<PgServer, 'port'>;
  readonly destination: Pick<PgServer, 'port'>;
  /** Database names (the same on both sides, also the label), or full entries. */
  readonly databases: readonly (string | Json)[];
  readonly migration?: Json;
  readonly job?: Json;
  readonly image?: Json;
}

/** migration.yaml for servers on the host: both logged in as postgres, passwords from Secret `pg` (source, destination). */
export function specYaml(o: SpecOptions): string {
  const endpoint = (server: Pick<PgServer, 'port'>, key: string) => ({
    host: POD_GATEWAY, port: server.port, username: 'postgres', sslmode: 'disable', password: { secret: 'pg', key },
  });
  return stringify({
    name: o.name,
    namespace: o.namespace,
    ...(o.image ? { image: o.image } : {}),
    ...(o.job ? { job: o.job } : {}),
    migration: { retries: { attempts: 1 }, ...o.migration },
    defaults: { source: endpoint(o.source, 'source'), destination: endpoint(o.destination, 'destination') },
    databases: o.databases.map((d) => (typeof d === 'string' ? { name: d, source: { database: d }, destination: { database: d } } : d)),
  });
}

/** An operator's working directory: migration.yaml, dist/ from synth, the repository's kustomization.yaml. */
export class Workspace {
  readonly dir = mkdtempSync(join(tmpdir(), 'dbm-e2e-'));
  readonly dist = join(this.dir, 'dist');
  readonly spec = join(this.dir, 'migration.yaml');

  constructor() {
    copyFileSync(join(REPO, 'kustomization.yaml'), join(this.dir, 'kustomization.yaml'));
  }

  /** Writes migration.yaml and runs `npm run synth -- --spec migration.yaml --out dist`; returns what synth printed. */
  async synth(specText: string): Promise<string> {
    writeFileSync(this.spec, specText);
    const r = await run('npm', ['run', '--silent', 'synth', '--', '--spec', this.spec, '--out', this.dist], { cwd: REPO, timeoutMs: 180_000 });
    if (r.code !== 0) throw new Error(`npm run synth exited ${r.code}:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** Every file synth wrote to dist/, concatenated. */
  manifests(): string {
    return readdirSync(this.dist).map((f) => readFileSync(join(this.dist, f), 'utf8')).join('\n');
  }

  /** `db-migration images --spec migration.yaml` after writing `specText`: the images to mirror, one a line. */
  async images(specText: string): Promise<string[]> {
    writeFileSync(this.spec, specText);
    const r = await run(process.execPath, [join(REPO, 'bin', 'db-migration.js'), 'images', '--spec', this.spec], { cwd: REPO });
    if (r.code !== 0) throw new Error(`db-migration images exited ${r.code}:\n${r.stdout}${r.stderr}`);
    return r.stdout.trim().split('\n');
  }

  /** `kubectl create secret generic NAME --from-file=KEY=FILE...`: values never on a command line. */
  async createSecret(ns: string, name: string, values: Record<string, string>): Promise<void> {
    const secretDir = mkdtempSync(join(this.dir, 'secret-'));
    try {
      const args = Object.entries(values).map(([key, value]) => {
        writeFileSync(join(secretDir, key), value, { mode: 0o600 });
        return `--from-file=${key}=${join(secretDir, key)}`;
      });
      await kubectlOk(['-n', ns, 'create', 'secret', 'generic', name, ...args]);
    } finally {
      rmSync(secretDir, { recursive: true, force: true });
    }
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The Secret `pg` that specYaml's endpoints refer to, with the two servers' superuser passwords. */
export function createPasswordSecret(ws: Workspace, ns: string, source: PgServer, destination: PgServer, override: { source?: string } = {}): Promise<void> {
  return ws.createSecret(ns, 'pg', { source: override.source ?? source.superPassword, destination: destination.superPassword });
}

export interface LogFollower {
  text(): string;
  /** Resolves with the log so far once it matches `re`; throws after `timeoutMs` with the log and the cluster's report. */
  waitFor(re: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves once `kubectl logs -f` has ended (the container stopped). */
  readonly ended: Promise<void>;
  stop(): void;
}

/**
 * `kubectl -n NS logs -f TARGET` (job/NAME or a pod), started again while it fails before any output (the pod not
 * there yet, its init container still running), for at most `timeoutMs`.
 */
export function followLogs(ns: string, target: string, timeoutMs = 300_000): LogFollower {
  let text = '';
  let stopped = false;
  let child: ReturnType<typeof spawn> | undefined;
  const deadline = Date.now() + timeoutMs;
  const ended = (async () => {
    while (!stopped && Date.now() < deadline) {
      const before = text.length;
      child = spawn('kubectl', ['-n', ns, 'logs', '-f', target, '--pod-running-timeout=20s'], { env: { ...process.env, KUBECONFIG }, stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (c: Buffer) => { text += c.toString(); });
      const code = await new Promise<number>((resolve) => child!.on('close', (c) => resolve(c ?? 1)));
      if (code === 0 || text.length > before) return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  const timer = setTimeout(() => child?.kill(), timeoutMs);
  void ended.finally(() => clearTimeout(timer));
  return {
    text: () => text,
    ended,
    stop: () => { stopped = true; child?.kill(); },
    async waitFor(re, waitMs) {
      const until = Date.now() + waitMs;
      while (!re.test(text)) {
        if (Date.now() > until) throw new Error(`kubectl logs -f ${target}: no ${re} within ${waitMs / 1000} s; the log so far:\n${text}\n${await clusterReport(ns)}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      return text;
    },
  };
}

/** Fails if any of `secrets` appears in `texts` (logs, termination messages, command output). */
export function assertNoSecret(secrets: readonly string[], ...texts: string[]): void {
  for (const secret of secrets) {
    for (const text of texts) if (text.includes(secret)) throw new Error(`a password appears in what the operator sees:\n${text}`);
  }
}
