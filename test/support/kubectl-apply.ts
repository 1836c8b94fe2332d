/**
 * The real kubectl's client-side apply, as a dry run against the stand-in API server (fake-apiserver.ts): the
 * objects it would send on a first apply, each with the last-applied annotation kubectl computed itself.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './repo';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** `kubectl apply ARGS --dry-run=client -o json` in `cwd`, against the API server at `server`: the objects it sends. */
export async function kubectlApply(server: string, cwd: string, args: string[]): Promise<Obj[]> {
  const { stdout } = await promisify(execFile)('kubectl', [
    'apply', ...args, '--dry-run=client', '--validate=false', '-o', 'json', `--server=${server}`,
  ], { cwd, encoding: 'utf8', maxBuffer: 1 << 28, env: { PATH: process.env.PATH, HOME: cwd, KUBECONFIG: '/dev/null' } });
  const out = JSON.parse(stdout) as Obj;
  return out.kind === 'List' ? out.items : [out];
}

/** A new directory laid out like the repository after `npm run synth`: dist/ with `yaml`, and the root kustomization.yaml. */
export function synthCheckout(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbm-kubectl-'));
  cpSync(join(REPO, 'kustomization.yaml'), join(dir, 'kustomization.yaml'));
  mkdirSync(join(dir, 'dist'));
  writeFileSync(join(dir, 'dist', 'db-migration.k8s.yaml'), yaml);
  return dir;
}

/** `Kind/name`. */
export const objectKey = (o: Obj) => `${o.kind}/${o.metadata.name}`;
