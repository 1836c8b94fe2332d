/**
 * The plan: which databases move, with which options, and the exact pg_dump / pg_restore commands. Pure
 * functions of the runtime config; the phases run these commands and the dry run prints them, so what a
 * dry run shows is what a real run executes.
 */
import { join } from 'node:path';
import type { ResolvedEndpoint, RuntimeConfig, RuntimeDatabase } from '../spec/runtime-config';
import { libpqEnv } from './postgres/connection';
import { restoreSectionArgs, schemaDumpArgs, type RestorePart } from './stream/schema-archive';

export type MigrationOptions = RuntimeConfig['migration'];

/** One external command: program, arguments and its libpq environment (the password only by reference). */
export interface ToolCommand {
  readonly tool: 'pg_dump' | 'pg_restore';
  /** Path of the program (or its bare name, found on PATH). */
  readonly cmd: string;
  readonly args: readonly string[];
  /** PG* variables for the tool, without PGPASSWORD. */
  readonly pgEnv: Readonly<Record<string, string>>;
  /** Environment variable that holds the password (passed on as PGPASSWORD), or none for offline commands. */
  readonly passwordEnv?: string;
}

export interface DatabasePlan {
  readonly name: string;
  readonly source: ResolvedEndpoint;
  readonly destination: ResolvedEndpoint;
  /** `<paths.dumps>/<name>`: pg_dump's directory-format output. */
  readonly dumpDir: string;
  readonly dump: ToolCommand;
  /** `pg_restore --list`: the dump's table of contents (to count items for progress). */
  readonly list: ToolCommand;
  readonly restore: ToolCommand;
  /** The restore a retry runs into a destination that was empty before this run: adds --clean --if-exists. */
  readonly restoreRetry: ToolCommand;
  readonly verify: MigrationOptions['verify'];
  /**
   * Dump mode with verification: pg_dump runs in a snapshot the runner exports (`--snapshot=<id>` added to
   * `dump` at run time), and the source side of verify (row counts, or checksums) is read in that same snapshot.
   */
  readonly dumpInSnapshot: boolean;
  /** Stream mode: the schema commands the stream engine runs (snapshot and archive named at run time). */
  readonly stream?: StreamPlan;
}

export interface StreamPlan {
  /** pg_dump of the pre-data and post-data sections in the source snapshot, to a small archive in paths.tmp. */
  readonly schemaDump: ToolCommand;
  readonly preData: ToolCommand;
  readonly postData: ToolCommand;
}

/** Shown for values only known at run time. */
export const RUN_TIME_SNAPSHOT = '<snapshot exported at run time>';

export interface MigrationPlan {
  readonly name: string;
  readonly dryRun: boolean;
  readonly options: MigrationOptions;
  /** Where pg_dump and pg_restore come from; undefined: PATH. */
  readonly binDir: string | undefined;
  /** Enabled databases, in spec order. */
  readonly databases: readonly DatabasePlan[];
  /** Names of disabled databases. */
  readonly skipped: readonly string[];
}

export interface PlanOptions {
  /** @default - config.migration.dryRun */
  readonly dryRun?: boolean;
  /** @default - PG_BIN from env, else PATH */
  readonly binDir?: string;
  /** Environment (for PG_BIN). @default {} */
  readonly env?: NodeJS.ProcessEnv;
}

/** Directory of the PostgreSQL client tools: the option, else $PG_BIN, else undefined (PATH). */
export function resolveBinDir(binDir: string | undefined, env: NodeJS.ProcessEnv = {}): string | undefined {
  const dir = binDir ?? env.PG_BIN;
  return dir ? dir : undefined;
}

export function toolPath(tool: string, binDir: string | undefined): string {
  return binDir ? join(binDir, tool) : tool;
}

/** libpq environment of an endpoint without the password (the plan never holds a secret value). */
export function endpointEnv(ep: ResolvedEndpoint, readOnly: boolean, options: MigrationOptions): Record<string, string> {
  const env = libpqEnv(ep, { [ep.passwordEnv]: 'unused' }, { readOnly, connectTimeoutSeconds: options.timeouts.connect });
  delete env.PGPASSWORD;
  return env;
}

/** A --dbname value that libpq never mistakes for a connection string. */
export function dbnameArg(database: string): string {
  if (!/=|^postgres(ql)?:\/\//.test(database)) return database;
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function dumpCommand(db: RuntimeDatabase, dumpDir: string, options: MigrationOptions, binDir?: string): ToolCommand {
  const d = options.dump;
  const args = [
    '--format=directory',
    `--jobs=${d.jobs}`,
    `--file=${dumpDir}`,
    `--compress=${d.compression}`,
    `--lock-wait-timeout=${d.lockWaitTimeoutSeconds}s`,
    '--no-password',
    ...(options.verbose ? ['--verbose'] : []),
    ...d.schemas.map((s) => `--schema=${s}`),
    ...d.excludeSchemas.map((s) => `--exclude-schema=${s}`),
    ...d.extraArgs,
  ];
  return { tool: 'pg_dump', cmd: toolPath('pg_dump', binDir), args, pgEnv: endpointEnv(db.source, true, options), passwordEnv: db.source.passwordEnv };
}

export interface RestoreVariant {
  /** Add --clean --if-exists even if restore.clean is off (a retry into a destination this run filled). */
  readonly cleanFirst?: boolean;
}

export function restoreCommand(
  db: RuntimeDatabase, dumpDir: string, options: MigrationOptions, binDir?: string, variant: RestoreVariant = {},
): ToolCommand {
  const r = options.restore;
  const args = [
    '--format=directory',
    `--dbname=${dbnameArg(db.destination.database)}`,
    `--jobs=${r.jobs}`,
    '--exit-on-error',
    '--no-password',
    '--verbose', // progress is tracked from its per-item lines
    ...(r.noOwner ? ['--no-owner'] : []),
    ...(r.noAcl ? ['--no-acl'] : []),
    ...(r.clean || variant.cleanFirst ? ['--clean', '--if-exists'] : []),
    ...r.extraArgs,
    dumpDir,
  ];
  return { tool: 'pg_restore', cmd: toolPath('pg_restore', binDir), args, pgEnv: endpointEnv(db.destination, false, options), passwordEnv: db.destination.passwordEnv };
}

/** The dump command in an exported snapshot: `--snapshot=<id>` after the runner's own options, before the spec's. */
export function dumpInSnapshotCommand(cmd: ToolCommand, snapshot: string): ToolCommand {
  const at = cmd.args.indexOf('--no-password') + 1;
  return { ...cmd, args: [...cmd.args.slice(0, at), `--snapshot=${snapshot}`, ...cmd.args.slice(at)] };
}

/** The stream engine's schema commands (stream/schema-archive.ts builds the same arguments when it runs them). */
export function streamPlan(db: RuntimeDatabase, config: RuntimeConfig, binDir?: string): StreamPlan {
  const options = config.migration;
  const archive = join(config.paths.tmp, `stream-${db.name}-<pid>-<time>.schema.dump`);
  const restore = (section: 'pre-data' | 'post-data', part?: RestorePart): ToolCommand => ({
    tool: 'pg_restore', cmd: toolPath('pg_restore', binDir), args: restoreSectionArgs(config, db.destination, archive, section, part),
    pgEnv: endpointEnv(db.destination, false, options), passwordEnv: db.destination.passwordEnv,
  });
  return {
    schemaDump: {
      tool: 'pg_dump', cmd: toolPath('pg_dump', binDir), args: schemaDumpArgs(config, db.source, RUN_TIME_SNAPSHOT, archive),
      pgEnv: endpointEnv(db.source, true, options), passwordEnv: db.source.passwordEnv,
    },
    preData: restore('pre-data'),
    // The last post-data restore: the entries not built while the copy ran (stream/post-data.ts).
    postData: restore('post-data', { listFile: '<what was not built early>' }),
  };
}

export function listCommand(dumpDir: string, binDir?: string): ToolCommand {
  return { tool: 'pg_restore', cmd: toolPath('pg_restore', binDir), args: ['--list', dumpDir], pgEnv: {} };
}

export function buildPlan(config: RuntimeConfig, opts: PlanOptions = {}): MigrationPlan {
  const binDir = resolveBinDir(opts.binDir, opts.env);
  const options = config.migration;
  const databases = config.databases.filter((d) => d.enabled).map((db): DatabasePlan => {
    const dumpDir = join(config.paths.dumps, db.name);
    return {
      name: db.name,
      source: db.source,
      destination: db.destination,
      dumpDir,
      dump: dumpCommand(db, dumpDir, options, binDir),
      list: listCommand(dumpDir, binDir),
      restore: restoreCommand(db, dumpDir, options, binDir),
      restoreRetry: restoreCommand(db, dumpDir, options, binDir, { cleanFirst: true }),
      verify: options.verify,
      dumpInSnapshot: options.mode === 'dump' && options.verify !== 'none',
      ...(options.mode === 'stream' || options.mode === 'online' ? { stream: streamPlan(db, config, binDir) } : {}),
    };
  });
  return {
    name: config.name,
    dryRun: opts.dryRun ?? options.dryRun,
    options,
    binDir,
    databases,
    skipped: config.databases.filter((d) => !d.enabled).map((d) => d.name),
  };
}

/** Names of every password variable in the config (to keep them out of child environments). */
export function passwordEnvNames(config: RuntimeConfig): string[] {
  return [...new Set(config.databases.flatMap((d) => [d.source.passwordEnv, d.destination.passwordEnv]))];
}

/**
 * The child's environment: the runner's own minus every PG* variable and every password variable, plus the
 * command's libpq settings and its one password as PGPASSWORD.
 */
export function commandEnv(cmd: ToolCommand, env: NodeJS.ProcessEnv, passwordVars: readonly string[]): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  const drop = new Set(passwordVars);
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || k.startsWith('PG') || drop.has(k)) continue;
    out[k] = v;
  }
  Object.assign(out, cmd.pgEnv);
  if (cmd.passwordEnv) {
    const pw = env[cmd.passwordEnv];
    if (pw) out.PGPASSWORD = pw;
  }
  return out;
}

/** Shell-style quoting, for display only. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The command as one line: `PGHOST=... PGPASSWORD=<from $VAR> pg_dump ...`. Never contains a secret. */
export function formatCommand(cmd: ToolCommand): string {
  const env = Object.entries(cmd.pgEnv).map(([k, v]) => `${k}=${shellQuote(v)}`);
  if (cmd.passwordEnv) env.push(`PGPASSWORD=<from $${cmd.passwordEnv}>`);
  return [...env, shellQuote(cmd.cmd), ...cmd.args.map(shellQuote)].join(' ');
}
