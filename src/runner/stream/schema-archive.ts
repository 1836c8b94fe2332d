/**
 * pg_dump and pg_restore for the stream engine, run through `runTool` (postgres/exec.ts), the one place processes
 * are started. The schema (pre-data and post-data sections) is dumped once, in the source snapshot, to a
 * small custom-format archive in the tmp directory: pre-data is restored from it before the COPY, post-data
 * (indexes, constraints, triggers, matview refreshes) after it, in parallel (-j needs a seekable archive).
 */
import { join } from 'node:path';
import type { ResolvedEndpoint, RuntimeConfig } from '../../spec/runtime-config';
import { libpqEnv } from '../postgres/connection';
import { runTool } from '../postgres/exec';
import { StreamUnsupportedError } from './stream-errors';

export interface ToolContext {
  readonly config: RuntimeConfig;
  readonly env: NodeJS.ProcessEnv;
  /** @default - PATH */
  readonly binDir: string | undefined;
  readonly signal: AbortSignal;
  readonly log: (level: 'info' | 'warn', msg: string) => void;
}

/**
 * pg_dump options that would change what the archive holds or how it is written; the engine sets these
 * itself, so the spec's dump.extraArgs must not.
 */
const CONFLICTING_DUMP_ARGS = /^(-[aFfjs]|--(data-only|schema-only|section|format|file|jobs|snapshot|serializable-deferrable)(=|$))/;

export function toolPath(tool: 'pg_dump' | 'pg_restore', binDir: string | undefined): string {
  return binDir ? join(binDir, tool) : tool;
}

/** The child's environment: the runner's minus every PG* and password variable, plus one endpoint's libpq settings. */
export function childEnv(ctx: ToolContext, ep: ResolvedEndpoint | undefined, readOnly: boolean): NodeJS.ProcessEnv {
  const drop = new Set(ctx.config.databases.flatMap((d) => [d.source.passwordEnv, d.destination.passwordEnv]));
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(ctx.env)) {
    if (v !== undefined && !k.startsWith('PG') && !drop.has(k)) out[k] = v;
  }
  if (ep) Object.assign(out, libpqEnv(ep, ctx.env, { readOnly, connectTimeoutSeconds: ctx.config.migration.timeouts.connect }));
  return out;
}

/** Password values to redact from tool output. */
function secretsOf(ctx: ToolContext, ...eps: ResolvedEndpoint[]): string[] {
  return eps.map((ep) => ctx.env[ep.passwordEnv]).filter((v): v is string => !!v);
}

/** A --dbname value libpq never mistakes for a connection string or URI. */
export function dbnameArg(database: string): string {
  return `--dbname=dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/**
 * pg_dump's arguments for the schema archive (also what the dry run prints). Throws StreamUnsupportedError
 * when dump.extraArgs sets what the engine sets itself.
 */
export function schemaDumpArgs(config: RuntimeConfig, source: ResolvedEndpoint, snapshot: string, file: string): string[] {
  const d = config.migration.dump;
  const bad = d.extraArgs.find((a) => CONFLICTING_DUMP_ARGS.test(a));
  if (bad) throw new StreamUnsupportedError(`dump.extraArgs has ${bad}, which stream mode sets itself: remove it or use mode: dump`);
  return [
    '--format=custom',
    '--section=pre-data',
    '--section=post-data',
    `--snapshot=${snapshot}`,
    `--lock-wait-timeout=${d.lockWaitTimeoutSeconds}s`,
    `--file=${file}`,
    '--no-password',
    ...d.schemas.map((s) => `--schema=${s}`),
    ...d.excludeSchemas.map((s) => `--exclude-schema=${s}`),
    ...d.extraArgs,
    dbnameArg(source.database),
  ];
}

/** pg_dump's schema sections in the snapshot, to `file` (custom format). */
export async function dumpSchemaArchive(ctx: ToolContext, source: ResolvedEndpoint, snapshot: string, file: string): Promise<void> {
  await runTool({
    cmd: toolPath('pg_dump', ctx.binDir),
    args: schemaDumpArgs(ctx.config, source, snapshot, file),
    env: childEnv(ctx, source, true),
    signal: ctx.signal,
    timeoutMs: ctx.config.migration.timeouts.dump * 1000,
    phase: 'stream pre-data dump',
    secrets: secretsOf(ctx, source),
    onStderrLine: (l) => { if (l.trim()) ctx.log('warn', `pg_dump: ${l}`); },
  });
}

/** `pg_restore --list` of the archive: its table of contents, one entry a line. */
export async function listArchive(ctx: ToolContext, file: string): Promise<string[]> {
  const lines: string[] = [];
  await runTool({
    cmd: toolPath('pg_restore', ctx.binDir),
    args: ['--list', file],
    env: childEnv(ctx, undefined, true),
    signal: ctx.signal,
    timeoutMs: 300_000,
    phase: 'stream archive list',
    onStdoutLine: (l) => lines.push(l),
  });
  return lines;
}

/** Which entries of a section to restore, and with how many jobs. */
export interface RestorePart {
  /** A `pg_restore --list` file selecting the entries. @default - the whole section */
  readonly listFile?: string;
  /** Parallel jobs (post-data only). @default restore.jobs */
  readonly jobs?: number;
}

/** pg_restore's arguments for one section of the archive, or part of it (also what the dry run prints). */
export function restoreSectionArgs(
  config: RuntimeConfig, destination: ResolvedEndpoint, file: string, section: 'pre-data' | 'post-data', part: RestorePart = {},
): string[] {
  const r = config.migration.restore;
  return [
    `--section=${section}`,
    '--exit-on-error',
    '--no-password',
    // Post-data items (index builds, constraint validation) run in parallel; pre-data is serial by nature.
    ...(section === 'post-data' ? [`--jobs=${part.jobs ?? r.jobs}`] : []),
    ...(part.listFile ? [`--use-list=${part.listFile}`] : []),
    ...(r.noOwner ? ['--no-owner'] : []),
    ...(r.noAcl ? ['--no-acl'] : []),
    ...(r.clean && section === 'pre-data' ? ['--clean', '--if-exists'] : []),
    ...r.extraArgs,
    dbnameArg(destination.database),
    file,
  ];
}

/** Restores one section of the archive (or the part `part` selects) into the destination, stopping at the first error. */
export async function restoreSection(
  ctx: ToolContext, destination: ResolvedEndpoint, file: string, section: 'pre-data' | 'post-data', part: RestorePart = {},
): Promise<void> {
  await runTool({
    cmd: toolPath('pg_restore', ctx.binDir),
    args: restoreSectionArgs(ctx.config, destination, file, section, part),
    env: childEnv(ctx, destination, false),
    signal: ctx.signal,
    timeoutMs: ctx.config.migration.timeouts.restore * 1000,
    phase: `stream ${section} restore`,
    secrets: secretsOf(ctx, destination),
    onStderrLine: (l) => { if (l.trim()) ctx.log('warn', `pg_restore: ${l}`); },
  });
}
