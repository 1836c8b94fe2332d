/**
 * The runner's entry point, bundled into the single file the Job runs:
 *
 *   node /opt/db-migration/runner.js --config /etc/db-migration/config/config.json
 *
 * It re-validates the config (a hand-edited ConfigMap gets field-path errors, exit 2), runs the migration
 * with the process environment, and turns SIGTERM / SIGINT into a clean stop. Exit codes: 0 every enabled
 * database migrated and verified (or the dry run's pre-flight passed); 1 the migration failed; 2 the
 * arguments or the config are wrong; 143 / 130 interrupted by SIGTERM / SIGINT.
 *
 * With --resume (the Job always passes it: it retries a failed or killed pod with the same arguments and
 * empty volumes) every attempt picks up what the earlier ones recorded on the destination: verified
 * databases are skipped, half-restored ones reset and migrated again. Without it (a workstation run that did
 * not ask) a database an earlier run left marked is refused, with what to do.
 */
import { readFileSync } from 'node:fs';
import { formatPath } from '../spec/issues';
import { CONTAINER_PATHS, runtimeConfigSchema, type RuntimeConfig } from '../spec/runtime-config';
import { passwordEnvNames } from './plan';
import { Logger } from './report/log';
import { runMigration } from './migrate';
import { cleanupReplication } from './online/cleanup';

export const EXIT_CODES = { ok: 0, failed: 1, config: 2, sigint: 130, sigterm: 143 } as const;

export const USAGE = `Usage: node runner.js [options]

Migrates the PostgreSQL databases listed in the runtime config: pre-flight checks, then for each database
pg_dump → pg_restore → ANALYZE → verify. Passwords are read from the environment variables the config names.

With --resume, a database an earlier attempt migrated and verified is skipped, one it left half-restored is
reset and migrated again; a non-empty database it did not fill is never touched (unless restore.clean).

Options:
  --config FILE          runtime config (JSON) (default: ${CONTAINER_PATHS.configFile})
  --dry-run              pre-flight and print the plan and commands; nothing moves
  --verbose              log the commands and the tools' own output
  --log-format FORMAT    text or json (default: the config's migration.logFormat)
  --bin-dir DIR          directory of pg_dump and pg_restore (default: $PG_BIN, else PATH)
  --resume               continue what earlier attempts recorded on the destination (the Job always resumes)
  --cleanup              online mode: remove the publications, slots and subscriptions earlier attempts left,
                         list them, and exit (also migration.cleanup: true in the config)
  --help                 show this help

Exit codes: 0 migrated (or dry run passed), 1 migration failed, 2 bad arguments or config,
            143 stopped by SIGTERM, 130 stopped by SIGINT.
`;

export interface MainArgs {
  readonly config: string;
  readonly dryRun: boolean;
  readonly verbose: boolean;
  readonly logFormat?: 'text' | 'json';
  readonly binDir?: string;
  readonly resume: boolean;
  /** Remove online mode's replication objects instead of migrating (or migration.cleanup in the config). */
  readonly cleanup: boolean;
  readonly help: boolean;
}

/** A problem with the arguments or the config: reported in plain words, exit 2. */
export class ConfigError extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join('\n'));
    this.name = 'ConfigError';
  }
}

export function parseArgs(argv: readonly string[]): MainArgs {
  let config: string = CONTAINER_PATHS.configFile;
  let dryRun = false;
  let verbose = false;
  let help = false;
  let resume = false;
  let cleanup = false;
  let logFormat: 'text' | 'json' | undefined;
  let binDir: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const [name, inline] = arg.startsWith('--') && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new ConfigError([`${name} needs a value (see --help)`]);
      return v;
    };
    switch (name) {
      case '--config': config = value(); break;
      case '--dry-run': dryRun = true; break;
      case '--verbose': verbose = true; break;
      case '--resume': resume = true; break;
      case '--cleanup': cleanup = true; break;
      case '--bin-dir': binDir = value(); break;
      case '--help': case '-h': help = true; break;
      case '--log-format': {
        const v = value();
        if (v !== 'text' && v !== 'json') throw new ConfigError([`--log-format must be text or json (got "${v}")`]);
        logFormat = v;
        break;
      }
      default:
        throw new ConfigError([`unknown argument "${arg}" (see --help)`]);
    }
  }
  return { config, dryRun, verbose, logFormat, binDir, resume, cleanup, help };
}

/** Reads and validates the runtime config; every problem as `FILE: field.path: message`. */
export function loadRuntimeConfig(file: string): RuntimeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError([`${file}: cannot read the config (${code === 'ENOENT' ? 'no such file' : (err as Error).message})`]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`${file}: not valid JSON: ${(err as Error).message}`]);
  }
  const parsed = runtimeConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${file}: ${formatPath(i.path) || '(top level)'}: ${i.message}`));
  }
  return parsed.data;
}

/**
 * In an Indexed Job (job.parallelism) each pod gets JOB_COMPLETION_INDEX and migrates only the enabled
 * database at that index, in spec order; the others are recorded as skipped in its summary.
 */
export function forCompletionIndex(config: RuntimeConfig, index: string | undefined): RuntimeConfig {
  if (index === undefined || index === '') return config;
  const enabled = config.databases.filter((d) => d.enabled);
  const i = Number(index);
  if (!Number.isInteger(i) || i < 0 || i >= enabled.length) {
    throw new ConfigError([`JOB_COMPLETION_INDEX=${index} does not name one of the ${enabled.length} enabled databases (0-${enabled.length - 1})`]);
  }
  const chosen = enabled[i].name;
  return { ...config, databases: config.databases.map((d) => ({ ...d, enabled: d.enabled && d.name === chosen })) };
}

export interface MainIo {
  readonly env: NodeJS.ProcessEnv;
  readonly out: NodeJS.WritableStream;
  readonly err: NodeJS.WritableStream;
  /** Where SIGTERM / SIGINT come from. @default process */
  readonly signals?: Pick<NodeJS.Process, 'on' | 'off'>;
}

export async function main(argv: readonly string[] = process.argv.slice(2), io: MainIo = { env: process.env, out: process.stdout, err: process.stderr }): Promise<number> {
  let args: MainArgs;
  let config: RuntimeConfig;
  try {
    args = parseArgs(argv);
    if (args.help) {
      io.out.write(USAGE);
      return EXIT_CODES.ok;
    }
    config = loadRuntimeConfig(args.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err.write(`❌ ${err.lines.length > 1 ? `the config has ${err.lines.length} problems:\n` : ''}${err.lines.join('\n')}\n`);
    return EXIT_CODES.config;
  }
  try {
    config = forCompletionIndex(config, io.env.JOB_COMPLETION_INDEX);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.err.write(`❌ ${err.message}\n`);
    return EXIT_CODES.config;
  }
  config = {
    ...config,
    migration: {
      ...config.migration,
      ...(args.dryRun ? { dryRun: true } : {}),
      ...(args.verbose ? { verbose: true } : {}),
      ...(args.logFormat ? { logFormat: args.logFormat } : {}),
    },
  };

  if (args.cleanup || config.migration.cleanup) {
    const logger = Logger.create({ format: config.migration.logFormat, verbose: config.migration.verbose, out: io.out, logDir: config.paths.logs,
      secrets: passwordEnvNames(config).map((v) => io.env[v]) });
    try {
      return (await cleanupReplication(config, io.env, logger)) ? EXIT_CODES.ok : EXIT_CODES.failed;
    } finally {
      logger.close();
    }
  }

  const abort = new AbortController();
  let received: NodeJS.Signals | undefined;
  const signals = io.signals ?? process;
  const onSignal = (sig: NodeJS.Signals) => {
    if (received) {
      // A second signal: stop waiting for a clean stop.
      io.err.write(`⚠️ ${sig} again: exiting now\n`);
      process.exit(sig === 'SIGINT' ? EXIT_CODES.sigint : EXIT_CODES.sigterm);
    }
    received = sig;
    io.err.write(`⚠️ received ${sig}: stopping the running tool and writing the summary\n`);
    abort.abort(new Error(`received ${sig}`));
  };
  signals.on('SIGTERM', onSignal);
  signals.on('SIGINT', onSignal);
  try {
    const summary = await runMigration(config, { env: io.env, binDir: args.binDir, signal: abort.signal, out: io.out, resume: args.resume });
    if (received || summary.interrupted) return received === 'SIGINT' ? EXIT_CODES.sigint : EXIT_CODES.sigterm;
    return summary.ok ? EXIT_CODES.ok : EXIT_CODES.failed;
  } finally {
    signals.off('SIGTERM', onSignal);
    signals.off('SIGINT', onSignal);
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      // Not an expected failure (those are reported by runMigration): one line, no stack trace.
      process.stderr.write(`❌ the runner failed unexpectedly: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(EXIT_CODES.failed);
    },
  );
}
