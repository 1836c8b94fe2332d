/**
 * Pre-flight: for every enabled database, everything that would make the migration fail, found before any
 * data moves and reported at once with the SQL that fixes it. The source is only ever connected read only.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../../spec/runtime-config';
import { checkDestination, type DestinationFacts } from './destination';
import { Reporter } from './reporter';
import { checkSource, type SourceFacts } from './source';
import { checkOnlineDestination, checkOnlineSource } from '../../online/replication-checks';
import { clientToolVersion, majorLabel, majorOf } from './client-tools';
import type { ClientToolVersion, DatabasePreflight, PreflightReport } from './preflight-types';

export * from './preflight-types';
export { formatPreflightProblem, formatPreflightReport } from './format';

export interface PreflightOptions {
  /** Directory of pg_dump and pg_restore. @default - $PG_BIN from env, else PATH (as the plan runs them) */
  readonly binDir?: string;
}

export async function preflight(config: RuntimeConfig, env: NodeJS.ProcessEnv, opts: PreflightOptions = {}): Promise<PreflightReport> {
  const binDir = opts.binDir ?? (env.PG_BIN || undefined);
  const toolEnv = { ...process.env, ...env };
  const tools = await Promise.all([clientToolVersion('pg_dump', binDir, toolEnv), clientToolVersion('pg_restore', binDir, toolEnv)]);
  const databases: DatabasePreflight[] = [];
  // One database at a time: the checks are quick, and this keeps the connection footprint at two sessions.
  for (const db of config.databases.filter((d) => d.enabled)) {
    databases.push(await preflightDatabase(db, config, env, tools));
  }
  const problems = databases.flatMap((d) => d.problems);
  return { ok: problems.every((p) => p.severity !== 'error'), databases, problems, tools };
}

async function preflightDatabase(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, tools: readonly ClientToolVersion[],
): Promise<DatabasePreflight> {
  const src = new Reporter(db.name, 'source', db.source);
  const dst = new Reporter(db.name, 'destination', db.destination);
  const source = await checkSource(db, config, env, src).catch((err) => unexpected(src, err));
  checkTools(src, tools, source, config.image);
  const dest: DestinationFacts = await checkDestination(db, config, env, dst, source).catch((err) => { unexpected(dst, err); return {}; });
  if (config.migration.mode === 'online') {
    await checkOnlineSource(db, config, env, src).catch((err) => unexpected(src, err));
    await checkOnlineDestination(db, config, env, dst).catch((err) => unexpected(dst, err));
  }
  const problems = [...src.problems, ...dst.problems];
  return {
    database: db.name,
    ...(source ? {
      sourceVersion: source.version, sourceVersionText: source.versionText, sourceSizeBytes: source.sizeBytes,
      estimatedDumpBytes: source.estimatedDumpBytes, tables: source.tables, schemas: source.schemas,
    } : {}),
    ...(dest.version !== undefined ? { destinationVersion: dest.version, destinationVersionText: dest.versionText } : {}),
    ...(dest.exists !== undefined ? { destinationExists: dest.exists } : {}),
    ...(dest.willCreate ? { willCreateDestination: true } : {}),
    problems,
    ok: problems.every((p) => p.severity !== 'error'),
  };
}

/** pg_dump refuses a server newer than itself; pg_restore must read the archive that pg_dump writes. */
function checkTools(r: Reporter, tools: readonly ClientToolVersion[], source: SourceFacts | undefined, image: string): void {
  for (const t of tools) {
    if (t.versionNum === undefined) {
      r.error('client-version', `cannot run ${t.tool} (${t.path}): ${t.error}; use an image with PostgreSQL client tools (current image: ${image})`);
      continue;
    }
    if (source && majorOf(t.versionNum) < majorOf(source.version)) {
      r.error('client-version', `${t.tool} ${t.version} (${t.path}) is older than the source server (PostgreSQL ${source.versionText}) and `
        + `${t.tool === 'pg_dump' ? 'refuses to dump it' : 'cannot read what a newer pg_dump writes'}: use an image with PostgreSQL client tools `
        + `>= ${majorLabel(source.version)} (current image: ${image})`);
    }
  }
}

function unexpected(r: Reporter, err: unknown): undefined {
  r.error('connect', `pre-flight query failed: ${err instanceof Error ? err.message : String(err)}`);
  return undefined;
}
