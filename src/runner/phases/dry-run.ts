/** What the plan log and a dry run show: the plan, the exact commands, and the roles each database needs. */
import { replicationName } from '../online/names';
import { dirname } from 'node:path';
import type { RuntimeConfig } from '../../spec/runtime-config';
import { describeEndpoint } from '../postgres/connection';
import { humanError } from '../postgres/errors';
import type { Logger } from '../report/log';
import type { ResumeAction } from '../checks/progress-marker';
import { dumpInSnapshotCommand, formatCommand, RUN_TIME_SNAPSHOT, type DatabasePlan, type MigrationPlan, type ToolCommand } from '../plan';
import type { DatabasePreflight } from '../checks/preflight/checks';
import { formatBytes } from '../report/progress';
import { planRoles } from '../globals/copy-roles';

/** The plan as the run's first lines: node, databases, options; each database's commands as debug lines. */
export function logPlan(plan: MigrationPlan, logger: Logger, env: NodeJS.ProcessEnv): void {
  const log = logger.child({ phase: 'plan' });
  // Which node runs the runner: the Job's entrypoint says where it came from (the image, or image.runtime's copy).
  log.info(`node ${process.version} ${env.DBM_NODE_SOURCE || `(${process.execPath})`}`);
  const o = plan.options;
  log.info(`${plan.dryRun ? 'dry run' : 'migration'} "${plan.name}": ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'} `
    + `(${plan.databases.map((d) => d.name).join(', ') || 'none'})${plan.skipped.length ? `, skipped: ${plan.skipped.join(', ')}` : ''}`);
  log.info(`dump jobs ${o.dump.jobs}, compression ${o.dump.compression}; restore jobs ${o.restore.jobs}${o.restore.clean ? ', clean' : ''}; `
    + `verify ${o.verify}; timeouts dump ${o.timeouts.dump}s, restore ${o.timeouts.restore}s, verify ${o.timeouts.verify}s; `
    + `${o.retries.attempts} attempts, first retry after ${o.retries.delaySeconds}s; tools from ${plan.binDir ?? 'PATH'}`);
  if (o.mode === 'stream') log.info(`mode stream: ${o.copy.jobs} COPY workers per database, nothing on the dumps volume`);
  if (o.mode === 'online') {
    log.info(`mode online: ${o.copy.jobs} COPY workers per database in a replication slot's snapshot, then logical replication until the cutover `
      + `(cutover: ${o.online.cutover}, fence: ${o.online.fence}, ready below ${formatBytes(o.online.readyLagBytes)} of lag)`);
  }
  for (const db of plan.databases) {
    for (const [what, cmd] of planCommands(db)) log.child({ database: db.name }).debug(`${what}: ${formatCommand(cmd)}`);
  }
}

/** Dry run with migration.roles: the roles each database needs, and why. */
export async function printRolePlans(plan: MigrationPlan, config: RuntimeConfig, env: NodeJS.ProcessEnv, logger: Logger): Promise<void> {
  for (const db of plan.databases) {
    const l = logger.child({ phase: 'dry-run', database: db.name });
    try {
      const rp = await planRoles(config, config.databases.find((d) => d.name === db.name)!, env);
      l.info(`roles (${rp.mode}): ${rp.roles.length} would be made sure to exist on the destination (existing ones left as is)`
        + `${rp.roles.length ? `: ${rp.roles.map((r) => `${r.name} (${r.reasons.join(', ')}${r.memberOf ? ` of ${r.memberOf.join(', ')}` : ''})`).join('; ')}` : ''}`);
      for (const x of rp.excluded) l.info(`role ${x.name} left out: ${x.reason}`);
      l.info('then, after verification: the database\'s settings, grants and owner (never its comment)');
    } catch (err) {
      l.warn(`cannot plan the roles: ${humanError(err)}`);
    }
  }
}

/** The commands a database's migration runs, as the dry run and the plan log show them. */
export function planCommands(db: DatabasePlan): Array<[string, ToolCommand]> {
  if (db.stream) return [['schema dump', db.stream.schemaDump], ['pre-data', db.stream.preData], ['post-data', db.stream.postData]];
  return [['dump', db.dumpInSnapshot ? dumpInSnapshotCommand(db.dump, RUN_TIME_SNAPSHOT) : db.dump], ['restore', db.restore]];
}

/** Dry run: what would happen to each database, with the exact commands. */
export function printDryRun(plan: MigrationPlan, facts: Map<string, DatabasePreflight>, actions: Map<string, ResumeAction>, logger: Logger): void {
  const log = logger.child({ phase: 'dry-run' });
  for (const db of plan.databases) {
    const f = facts.get(db.name);
    const l = log.child({ database: db.name });
    const action = actions.get(db.name);
    if (action?.kind === 'skip') {
      l.info(`would skip: ${action.reason}`);
      continue;
    }
    if (action?.kind === 'reset') l.info(`would reset it first: ${action.note}`);
    l.info(`${describeEndpoint(db.source)} → ${describeEndpoint(db.destination)}: `
      + `${f?.sourceSizeBytes !== undefined ? formatBytes(f.sourceSizeBytes) : 'size unknown'}, ${f?.tables ?? '?'} tables`
      + `${f?.willCreateDestination ? `; would create database "${db.destination.database}" on the destination` : ''}`);
    if (db.stream && plan.options.mode === 'online') {
      const name = replicationName(plan.name, db.name);
      l.info(`would create publication ${name} (the migrated tables) and logical replication slot ${name} on the source, and copy in the slot's exported snapshot:`);
      l.info(`would run: ${formatCommand(db.stream.schemaDump)}`);
      l.info(`would run: ${formatCommand(db.stream.preData)}`);
      l.info(`then: COPY every table, post-data (${formatCommand(db.stream.postData)}), sequences, ANALYZE, as stream mode; `
        + `then subscription ${name} on the destination, bound to the slot, replicates until the cutover `
        + `(${plan.options.online.cutover === 'auto' ? 'as soon as every database is ready' : 'on the operator\'s cutover command'})`);
      l.info(`cutover: verify ${db.verify} at consistent points, fence ${plan.options.online.fence}, wait for the last changes, `
        + 'sequences, large objects and materialized views, the inventory; then drop the subscription, slot and publication');
    } else if (db.stream) {
      l.info(`would stream: export a snapshot on the source, and in it dump the schema (pre-data and post-data sections) to ${dirname(db.stream.schemaDump.args.find((a) => a.startsWith('--file='))!.slice(7))}:`);
      l.info(`would run: ${formatCommand(db.stream.schemaDump)}`);
      l.info(`would run: ${formatCommand(db.stream.preData)}`);
      l.info(`then: COPY every table source → destination in the snapshot, ${plan.options.copy.jobs} at a time, largest first (large objects too); `
        + `each table's indexes and primary key, unique and exclusion constraints are restored as soon as it is loaded (pg_restore --section=post-data --use-list=<its entries>)`);
      l.info(`then the rest of post-data (foreign keys, triggers, policies, ...): ${formatCommand(db.stream.postData)}`);
      l.info(`then: set sequences to the snapshot's values; ANALYZE; verify ${db.verify}; nothing is written to the dumps volume`);
    } else {
      for (const [, cmd] of planCommands(db)) l.info(`would run: ${formatCommand(cmd)}`);
      l.info(`then: ANALYZE; verify ${db.verify}; remove ${db.dumpDir}`);
    }
  }
  log.ok('dry run: nothing was dumped or restored');
}
