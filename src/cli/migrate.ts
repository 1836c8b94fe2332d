/**
 * `db-migration migrate`: runs, from this machine, the very runner bundle the Job runs, the way the Job starts it
 * (`node load-runner.js --config config.json`, the loader putting the compressed runner together from its parts). Passwords come from a file of
 * the Secret manifests the operator applies to the cluster, so each `{ secret, key }` reference resolves exactly as
 * it will in the Job; they reach the runner through its environment only. With --resume it continues what an earlier run recorded, as the Job does.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleRunner } from '../chart/runner-bundle';
import { RUNNER_LOADER_FILE } from '../chart/runner-loader';
import { packRunner, runnerFiles } from '../chart/runner-parts';
import { RUNNER_NODE_OPTIONS, runtimeConfigSchema, secretUses, toRuntimeConfig, workDirPaths } from '../spec/runtime-config';
import { CliError, EXIT, loadSpecOrExplain, type Io } from './context';
import { loadSecretsFile, resolveSecret, SecretsFileError } from './secrets-file';

export interface MigrateOptions {
  readonly spec: string;
  /** File of Secret manifests (data or stringData). Required. */
  readonly secrets?: string;
  /** @default - a new temporary directory */
  readonly workDir?: string;
  /** @default - the spec's migration.dryRun */
  readonly dryRun?: boolean;
  /** @default - the spec's migration.verbose */
  readonly verbose?: boolean;
  /** @default - the spec's migration.logFormat */
  readonly logFormat?: string;
  /** Directory holding pg_dump and pg_restore. @default - found on PATH */
  readonly binDir?: string;
  /** Continue what an earlier run recorded on the destination, as the Job always does. @default false */
  readonly resume?: boolean;
  /** Online mode: remove the replication objects earlier attempts left, instead of migrating. @default false */
  readonly cleanup?: boolean;
}

export async function migrateCommand(opts: MigrateOptions, io: Io): Promise<number> {
  const spec = loadSpecOrExplain(opts.spec);
  if (!opts.secrets) {
    throw new CliError('migrate needs --secrets FILE: a YAML file of the Secret manifests the spec refers to (data or stringData)', EXIT.usage);
  }
  if (opts.logFormat !== undefined && opts.logFormat !== 'text' && opts.logFormat !== 'json') {
    throw new CliError(`--log-format must be text or json (got "${opts.logFormat}")`, EXIT.usage);
  }
  const workDir = resolve(opts.workDir ?? mkdtempSync(join(tmpdir(), 'db-migration-')));
  const paths = workDirPaths(workDir);
  for (const dir of [paths.dumps, paths.logs, paths.tmp]) mkdirSync(dir, { recursive: true, mode: 0o700 });

  const env: NodeJS.ProcessEnv = { ...process.env };
  try {
    const store = loadSecretsFile(opts.secrets, spec.namespace);
    for (const use of secretUses(spec, paths.tls)) {
      const value = resolveSecret(store, use.ref, opts.secrets);
      if (use.kind === 'password') {
        env[use.target] = value;
      } else {
        mkdirSync(dirname(use.target), { recursive: true, mode: 0o700 });
        writeFileSync(use.target, value, { mode: 0o600 });
      }
    }
  } catch (err) {
    if (err instanceof SecretsFileError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }

  const base = toRuntimeConfig(spec, paths);
  const config = runtimeConfigSchema.parse({
    ...base,
    migration: {
      ...base.migration,
      ...(opts.dryRun ? { dryRun: true } : {}),
      ...(opts.verbose ? { verbose: true } : {}),
      ...(opts.logFormat ? { logFormat: opts.logFormat } : {}),
    },
  });
  const configFile = join(workDir, 'config.json');
  const loaderFile = join(workDir, RUNNER_LOADER_FILE);
  writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  const runner = runnerFiles(packRunner(bundleRunner().code));
  for (const [name, content] of Object.entries(runner)) writeFileSync(join(workDir, name), content, { mode: 0o600 });
  io.err(`ℹ️ work directory: ${workDir} (${Object.keys(runner).join(', ')}: the runner; config.json, dumps/, logs/migration.log, logs/summary.json)`);

  const args = [...RUNNER_NODE_OPTIONS, loaderFile, '--config', configFile, ...(opts.binDir ? ['--bin-dir', resolve(opts.binDir)] : []), ...(opts.resume ? ['--resume'] : []), ...(opts.cleanup ? ['--cleanup'] : [])];
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  createInterface({ input: child.stdout }).on('line', io.out);
  createInterface({ input: child.stderr }).on('line', io.err);
  // The runner stops its tools and writes its summary on SIGTERM / SIGINT: pass them on and wait for it.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    return await new Promise<number>((resolveExit, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => resolveExit(code ?? (signal === 'SIGINT' ? 130 : signal ? 143 : EXIT.failed)));
    });
  } finally {
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
  }
}
