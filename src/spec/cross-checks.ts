/**
 * Rules that span several fields (duplicates, values merged from `defaults`). They run on the raw document,
 * beside the schema, so that users get these problems in the same report as every other one.
 */
import { passwordEnvName } from './runtime-config';

export interface CrossIssue {
  readonly path: PropertyKey[];
  readonly message: string;
  readonly onKey?: boolean;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function crossFieldIssues(raw: unknown): CrossIssue[] {
  if (!isObj(raw)) return [];
  const jobIssues: CrossIssue[] = [];
  if (isObj(raw.job) && raw.job.backoffLimitPerIndex !== undefined && raw.job.parallelism === undefined) {
    jobIssues.push({ path: ['job', 'backoffLimitPerIndex'], message: 'needs job.parallelism (per-index retries exist only for an Indexed Job)' });
  }
  if (isObj(raw.job) && raw.job.parallelism !== undefined && isObj(raw.migration) && raw.migration.mode === 'online') {
    jobIssues.push({
      path: ['job', 'parallelism'],
      message: 'cannot be used with migration.mode: online (one pod replicates every database and cuts them over together; '
        + '`kubectl exec job/NAME` reaches one pod only): remove it, and use migration.parallelDatabases for parallel copies',
    });
  }
  if (!Array.isArray(raw.databases)) return jobIssues;
  const issues: CrossIssue[] = [...jobIssues];
  const defaults = isObj(raw.defaults) ? raw.defaults : {};
  const seenNames = new Map<string, number>();
  const seenEnv = new Map<string, string>();
  let enabled = 0;

  raw.databases.forEach((db, i) => {
    if (!isObj(db)) return;
    if (db.enabled !== false) enabled++;
    if (typeof db.name === 'string') {
      const first = seenNames.get(db.name);
      if (first !== undefined) {
        issues.push({ path: ['databases', i, 'name'], message: `duplicate database name "${db.name}" (already used by databases[${first}]; names must be unique)` });
      } else {
        seenNames.set(db.name, i);
        const env = passwordEnvName(db.name, 'source');
        const clash = seenEnv.get(env);
        if (clash !== undefined) {
          issues.push({ path: ['databases', i, 'name'], message: `"${db.name}" and "${clash}" differ only by "-" and "_" (names must stay unique once "-" becomes "_")` });
        }
        seenEnv.set(env, db.name);
      }
    }
    for (const side of ['source', 'destination'] as const) {
      const own = db[side];
      if (!isObj(own)) continue;
      const base = isObj(defaults[side]) ? (defaults[side] as Obj) : {};
      const merged: Obj = { port: 5432, sslmode: 'prefer', ...base, ...own };
      for (const field of ['host', 'username', 'password'] as const) {
        if (merged[field] === undefined) {
          issues.push({
            path: ['databases', i, side],
            message: `${field} is required (set ${side}.${field} here, or defaults.${side}.${field} for every database)`,
          });
        }
      }
      const sslmode = merged.sslmode;
      if ((sslmode === 'verify-ca' || sslmode === 'verify-full') && merged.caCert === undefined) {
        issues.push({
          path: ['databases', i, side],
          message: `sslmode ${sslmode} needs a CA certificate (set caCert: { secret: NAME, key: ca.crt } here or in defaults.${side})`,
        });
      }
    }
  });
  if (raw.databases.length > 0 && enabled === 0) {
    issues.push({ path: ['databases'], message: 'every database has enabled: false (enable at least one, or there is nothing to migrate)' });
  }
  return issues;
}
