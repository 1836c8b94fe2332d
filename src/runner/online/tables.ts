/**
 * Which source tables online mode publishes, and which it cannot: logical replication carries the changes of
 * permanent ordinary tables (leaf partitions listed one by one). UPDATE and DELETE on a published table need a
 * replica identity (its primary key, a chosen unique index, or FULL); unlogged tables write no WAL to decode.
 * Tables it does not publish are copied inside the write pause at cutover.
 */
import type { Client } from 'pg';
import type { RuntimeConfig } from '../../spec/runtime-config';
import { schemaMatcher } from '../checks/dumped-schemas';

export interface SourceTable {
  readonly schema: string;
  readonly name: string;
  /** pg_class.relreplident: d default (the primary key), n nothing, f full, i a chosen index. */
  readonly replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  readonly hasPrimaryKey: boolean;
  readonly unlogged: boolean;
  /** The current user owns it (or is a member of its owner, or superuser): it may publish it. */
  readonly owned: boolean;
}

export interface TableSurvey {
  /** Tables that would be published if nothing were excluded (permanent, in the migrated schemas). */
  readonly published: readonly SourceTable[];
  /** Permanent tables without a primary key or a chosen index: no replica identity, or FULL (pre-flight tells them apart). */
  readonly keyless: readonly SourceTable[];
  readonly unlogged: readonly SourceTable[];
  readonly largeObjects: number;
  /** The first few large objects' OIDs, to name them. */
  readonly largeObjectOids: readonly number[];
}

const IDENTITY = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;

export async function surveyTables(client: Client, matches: (schema: string) => boolean): Promise<TableSurvey> {
  const res = await client.query<{ schema: string; name: string; ident: 'd' | 'n' | 'f' | 'i'; pk: boolean; unlogged: boolean; owned: boolean }>(`
    SELECT n.nspname AS schema, c.relname AS name, c.relreplident::text AS ident, c.relpersistence = 'u' AS unlogged,
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
           pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1, 2`);
  const all = res.rows.filter((t) => matches(t.schema)).map((t): SourceTable => ({
    schema: t.schema, name: t.name, replicaIdentity: IDENTITY[t.ident], hasPrimaryKey: t.pk, unlogged: t.unlogged, owned: t.owned,
  }));
  const permanent = all.filter((t) => !t.unlogged);
  const lo = await client.query<{ n: string; oids: number[] | null }>(
    'SELECT count(*)::text AS n, (array_agg(oid::int8 ORDER BY oid))[1:10] AS oids FROM pg_catalog.pg_largeobject_metadata');
  return {
    published: permanent,
    keyless: permanent.filter((t) => t.replicaIdentity === 'nothing' || (t.replicaIdentity === 'default' && !t.hasPrimaryKey) || t.replicaIdentity === 'full'),
    unlogged: all.filter((t) => t.unlogged),
    largeObjects: Number(lo.rows[0].n),
    largeObjectOids: (lo.rows[0].oids ?? []).map(Number),
  };
}

export interface PublicationPlan {
  /** Published: changes replicate. */
  readonly replicated: readonly SourceTable[];
  /** Copied inside the write pause at cutover: unlogged tables and tablesWithoutKey: exclude. */
  readonly atCutover: readonly SourceTable[];
}

export async function planPublication(client: Client, config: RuntimeConfig): Promise<PublicationPlan> {
  const m = config.migration;
  const survey = await surveyTables(client, schemaMatcher(m.dump));
  const excluded = (t: SourceTable) => m.online.tablesWithoutKey[`${t.schema}.${t.name}`] === 'exclude';
  return {
    replicated: survey.published.filter((t) => !excluded(t)),
    atCutover: [...survey.unlogged, ...survey.published.filter(excluded)],
  };
}
