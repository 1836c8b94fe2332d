/**
 * Folder phases/: the modes (this file: each a short list of phases) and the phases, one module each over one
 * DatabaseRun (context.ts), with the failure report (failure.ts). Phases call the engines (dump-restore/, stream/,
 * online/, globals/) and checks/; only migrate.ts imports this folder.
 *
 * A database's migration: the mode's phases in order over one DatabaseRun, then the failure report and the
 * dump directory's removal. A mode is a short list of phase calls; a new one is a function and a line in MODES.
 */
import { describeEndpoint } from '../postgres/connection';
import { removeDumpDir } from '../dump-restore/pg-dump';
import type { RuntimeConfig } from '../../spec/runtime-config';
import type { DatabaseRun } from './context';
import { dumpPhase } from './dump';
import { recordFailure } from './failure';
import { analyzePhase, restorePhase } from './restore';
import { migrateRolesStep } from './roles';
import { carryDatabaseSettings } from './settings';
import { streamPhase } from './stream';
import { replicatePhase } from './replicate';
import { catchUpAndCutover } from './cutover';
import { verifyPhase } from './verify';

/** A migration mode: every phase of one database, in order. Throws the first phase's error that is not retried away. */
export type MigrationMode = (run: DatabaseRun) => Promise<void>;

/** dump → roles → restore → ANALYZE → verify → settings; the dump is removed afterwards (migrateDatabase). */
export async function dumpMode(run: DatabaseRun): Promise<void> {
  await dumpPhase(run);
  await migrateRolesStep(run);
  await restorePhase(run);
  await analyzePhase(run);
  await verifyPhase(run);
  await carryDatabaseSettings(run);
}

/** roles → stream (ANALYZE included) → verify → settings; nothing on the dumps volume. */
export async function streamMode(run: DatabaseRun): Promise<void> {
  await migrateRolesStep(run);
  await streamPhase(run);
  await verifyPhase(run);
  await carryDatabaseSettings(run);
}

/**
 * roles → initial copy in a replication slot's snapshot → replication until the cutover (its verification
 * included) → settings. The copy takes one of parallelDatabases slots; replication runs for every database at once.
 */
export async function onlineMode(run: DatabaseRun): Promise<void> {
  await migrateRolesStep(run);
  const replication = await run.online!.copySlot(() => replicatePhase(run));
  await catchUpAndCutover(run, replication);
  await carryDatabaseSettings(run);
}

/** The modes by migration.mode. */
export const MODES: Record<RuntimeConfig['migration']['mode'], MigrationMode> = {
  dump: dumpMode,
  stream: streamMode,
  online: onlineMode,
};

/**
 * Migrates one database in its mode. Never throws: a failure or an interruption is recorded with its phase
 * (failure.ts), and the dump directory is removed in any case.
 */
export async function migrateDatabase(run: DatabaseRun): Promise<void> {
  const { db, log } = run;
  const mode = run.migration.mode;
  log.info(`migrating ${describeEndpoint(db.source)} → ${describeEndpoint(db.destination)}${mode === 'dump' ? '' : ` (${mode} mode)`}`);
  try {
    await MODES[mode](run);
    run.record({ status: 'migrated', phase: undefined });
    log.ok('migrated');
  } catch (err) {
    run.online?.leave(db.name);
    await recordFailure(run, err);
  } finally {
    await removeDumpDir(db.dumpDir).then(
      () => log.child({ phase: 'cleanup' }).debug(`removed ${db.dumpDir}`),
      (e: Error) => log.child({ phase: 'cleanup' }).warn(`cannot remove ${db.dumpDir}: ${e.message}`),
    );
  }
}
