/** Source checks: reachable read only, every dumped object readable, room for the dump, free connections. */
import type { RuntimeConfig, RuntimeDatabase } from '../../../spec/runtime-config';
import { schemaMatcher } from '../dumped-schemas';
import { displayName, qualifiedName, quoteIdent } from '../../postgres/sql';
import { checkConnectionSlots, checkDiskSpace } from './capacity';
import { listRelations, listSchemas, objectRoles, type ObjectRoles, type RelationInfo } from './catalog-queries';
import { capList, connectOrReport, endQuietly, plural, Reporter } from './reporter';
import { planRolesFrom, type RolePlan } from '../../globals/role-plan';

export interface SourceFacts {
  readonly version: number;
  readonly versionText: string;
  readonly sizeBytes: number;
  readonly estimatedDumpBytes: number;
  readonly tables: number;
  /** Schemas the dump covers. */
  readonly schemas: string[];
  readonly roles: ObjectRoles;
  /** migration.roles other than none: the roles the role step will make sure exist on the destination. */
  readonly rolePlan?: RolePlan;
}

/** Most objects named in one message; the rest are counted. */
const CAP = 10;

export async function checkSource(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, r: Reporter): Promise<SourceFacts | undefined> {
  const m = config.migration;
  const { client } = await connectOrReport(r, db.source, env, { readOnly: true, connectTimeoutSeconds: m.timeouts.connect });
  if (!client) return undefined;
  try {
    const who = quoteIdent(db.source.username);
    const v = await client.query<{ num: number; text: string; size: string }>(
      `SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS text,
              pg_database_size(current_database())::text AS size`);
    const { num: version, text: versionText } = v.rows[0];
    const sizeBytes = Number(v.rows[0].size);

    // Schemas pg_dump will dump, with the same pattern rules it uses.
    const all = await listSchemas(client);
    const dumped = all.filter((s) => schemaMatcher(m.dump)(s.name));
    const schemas = dumped.map((s) => s.name);
    for (const pattern of m.dump.schemas) {
      if (!dumped.some((s) => schemaMatcher({ schemas: [pattern], excludeSchemas: [] })(s.name))) {
        r.error('schema-missing', `dump.schemas lists "${pattern}" but no schema of the source matches it (pg_dump would fail: no matching schemas were found)`);
      }
    }
    for (const s of dumped.filter((x) => !x.usage)) {
      r.error('schema-usage', `user ${who} has no USAGE on schema ${quoteIdent(s.name)}, which is dumped`,
        `GRANT USAGE ON SCHEMA ${quoteIdent(s.name)} TO ${who};`);
    }

    const relations = await listRelations(client, schemas);
    reportUnreadable(r, relations.filter((x) => (x.kind === 'r' || x.kind === 'p') && !x.canSelect), 'table', 'select-privilege', who);
    reportUnreadable(r, relations.filter((x) => x.kind === 'S' && !x.canSelect), 'sequence', 'sequence-privilege', who);
    const rls = relations.filter((x) => x.blockedByRls && x.canSelect);
    if (rls.length > 0) {
      r.error('row-security',
        `row-level security applies to user ${who} on ${plural(rls.length, 'table')} (${capList(rls.map((x) => displayName(x.schema, x.name)), CAP)}), `
        + 'so pg_dump (row_security off) would fail: dump as the owner or a role with BYPASSRLS',
        `ALTER ROLE ${who} BYPASSRLS;`);
    }

    // Stream mode writes nothing to the dumps volume (only a schema-only archive to the tmp volume).
    const estimatedDumpBytes = m.mode === 'stream' ? 0 : await checkDiskSpace(r, sizeBytes, {
      path: config.paths.dumps, limitBytes: config.storage.dumpsBytes, compression: m.dump.compression,
    });
    // Stream: copy.jobs readers, the snapshot session and pg_dump of the schema; dump: pg_dump's workers and leader.
    if (m.mode === 'stream') {
      await checkConnectionSlots(client, r, m.copy.jobs + 2, `copy.jobs ${m.copy.jobs} + 2`, { databaseLimits: true });
    } else {
      await checkConnectionSlots(client, r, m.dump.jobs + 1, `dump.jobs ${m.dump.jobs} + 1`, { databaseLimits: true });
    }
    const roles = await objectRoles(client, schemas);
    const rolePlan = m.roles === 'none' ? undefined : await planRolesFrom(client, m.roles, m.dump);
    return {
      version, versionText, sizeBytes, estimatedDumpBytes, schemas, roles, ...(rolePlan ? { rolePlan } : {}),
      tables: relations.filter((x) => x.kind === 'r').length,
    };
  } finally {
    await endQuietly(client);
  }
}

/** One problem per kind: the names (capped) and GRANTs for exactly those objects, or per schema when many. */
function reportUnreadable(r: Reporter, objs: RelationInfo[], noun: 'table' | 'sequence', check: 'select-privilege' | 'sequence-privilege', who: string): void {
  if (objs.length === 0) return;
  const names = objs.map((x) => displayName(x.schema, x.name));
  const what = noun === 'table' ? 'tables' : 'sequences';
  let fix: string;
  if (objs.length <= CAP) {
    fix = `GRANT SELECT ON ${noun === 'sequence' ? 'SEQUENCE ' : 'TABLE '}${objs.map((x) => qualifiedName(x.schema, x.name)).join(', ')} TO ${who};`;
  } else {
    const schemas = [...new Set(objs.map((x) => x.schema))];
    fix = schemas.map((s) => `GRANT SELECT ON ALL ${what.toUpperCase()} IN SCHEMA ${quoteIdent(s)} TO ${who};`).join('\n');
  }
  r.error(check, `user ${who} cannot read ${plural(objs.length, noun)}: ${capList(names, CAP)}`, fix);
}
