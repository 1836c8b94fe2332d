/** The roles phase (migration.roles): the roles the database needs, created on the destination before anything is restored. */
import { formatDuration } from '../report/progress';
import { withRetry } from '../postgres/retry';
import { describeRoleResult, migrateRoles } from '../globals/copy-roles';
import type { DatabaseRun } from './context';

export async function migrateRolesStep(run: DatabaseRun): Promise<void> {
  const m = run.migration;
  if (m.roles === 'none') return;
  const { env, signal } = run;
  const rolesLog = run.phaseLog('roles');
  const [res, rolesSeconds] = await run.timed('roles', () => withRetry(
    () => migrateRoles(run.config, run.runtimeDb, env, {
      binDir: run.options.binDir ?? (env.PG_BIN || undefined), passwordVars: run.passwordVars, signal, timeoutMs: m.timeouts.dump * 1000,
    }),
    { ...run.retry, phase: 'roles', logger: rolesLog, timeoutSetting: 'migration.timeouts.dump' },
  ));
  for (const line of describeRoleResult(res)) rolesLog[line.level](line.text);
  run.record({ rolesCreated: res.created });
  rolesLog.debug(`roles step took ${formatDuration(rolesSeconds)}`);
}
