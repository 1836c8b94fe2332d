/**
 * The settings phase: database-level settings (ALTER DATABASE / ROLE IN DATABASE SET, grants on the database,
 * owner) once the copy is verified and marked: the owner may change, after which the marker could no longer be
 * written. The comment is never carried: it holds the marker. Whatever the destination user may not do (or what
 * names a role that does not exist there, with roles: none) is logged with its SQL; it never fails the database.
 */
import { connect } from '../postgres/connection';
import { applyDatabaseSettings, readDatabaseSettings } from '../globals/database-settings';
import { humanError } from '../postgres/errors';
import type { DatabaseRun } from './context';

/**
 * Reads the source database's settings, grants and owner and applies them to the destination database
 * (globals/database-settings.ts). Never fails the database: it is migrated and verified already; what could not be
 * applied is logged with the SQL for an administrator.
 */
export async function carryDatabaseSettings(run: DatabaseRun): Promise<void> {
  const { db, runtimeDb, env } = run;
  const m = run.migration;
  const log = run.phaseLog('settings');
  const connectTimeoutSeconds = m.timeouts.connect;
  try {
    const src = await connect(runtimeDb.source, env, { readOnly: true, connectTimeoutSeconds });
    let settings;
    try {
      settings = await readDatabaseSettings(src, runtimeDb.source.database);
      // Online mode's fence is not a setting of the database: the destination must accept writes.
      if (m.mode === 'online' && m.online.fence === 'readOnly') {
        settings = { ...settings, settings: settings.settings.filter((s) => s.name !== 'default_transaction_read_only') };
      }
    } finally {
      await src.end().catch(() => undefined);
    }
    const dst = await connect({ ...runtimeDb.destination, database: 'postgres' }, env, { readOnly: false, connectTimeoutSeconds })
      .catch(() => connect(runtimeDb.destination, env, { readOnly: false, connectTimeoutSeconds }));
    try {
      const res = await applyDatabaseSettings(dst, db.destination.database, settings, { carryOwner: !m.restore.noOwner, carryComment: false });
      for (const sql of res.applied) log.info(`applied: ${sql}`);
      for (const w of res.warnings) log.warn(`${w.message}\n  fix: ${w.sql.replace(/\n/g, '\n  ')}`);
      for (const d of res.deferred) log.warn(`${d.message}; after the migration: ${d.sql}`);
      log.ok(`database settings: ${res.applied.length} applied, ${res.unchanged.length} already in place, ${res.warnings.length} not applied`);
    } finally {
      await dst.end().catch(() => undefined);
    }
  } catch (err) {
    log.warn(`database settings (ALTER DATABASE/ROLE ... SET, grants, owner) not carried: ${humanError(err)}`);
  }
}
