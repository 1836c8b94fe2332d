/**
 * `db-migration validate`: check the spec and print what would be generated, without writing anything.
 */
import { imageReference, nodeRuntimeImageReference } from '../spec/image';
import { mergedEndpoint, secretUses, CONTAINER_PATHS, NODE_RUNTIME_VOLUME_LIMIT } from '../spec/runtime-config';
import { loadSpecOrExplain, type Io } from './context';
import { jobDeadlineSeconds } from '../spec/schema';

export function validateCommand(opts: { spec: string }, io: Io): number {
  const spec = loadSpecOrExplain(opts.spec);
  const enabled = spec.databases.filter((d) => d.enabled);
  io.out(`✅ ${opts.spec} is valid: ${enabled.length} of ${spec.databases.length} databases enabled, namespace ${spec.namespace}`);
  io.out('');
  io.out('Databases:');
  for (const db of spec.databases) {
    const s = mergedEndpoint(spec, db, 'source');
    const d = mergedEndpoint(spec, db, 'destination');
    const mark = db.enabled ? '  ' : '  (disabled) ';
    io.out(`${mark}${db.name}: ${s.username}@${s.host}:${s.port}/${s.database} [${s.sslmode}] -> ${d.username}@${d.host}:${d.port}/${d.database} [${d.sslmode}]`);
  }
  io.out('');
  io.out('Images:');
  const pull = `pull ${spec.image.pullPolicy}${spec.image.pullSecrets.length ? `, secrets ${spec.image.pullSecrets.join(', ')}` : ''}`;
  io.out(`  ${imageReference(spec.image)} (runner: PostgreSQL client tools; ${pull})`);
  if (spec.image.runtime.enabled) {
    io.out(`  ${nodeRuntimeImageReference(spec.image)} (init container node-runtime: node for images without it; ${pull})`);
  }
  io.out('');
  io.out('Volumes:');
  io.out(`  dumps  emptyDir ${spec.job.storage.dumps} at ${CONTAINER_PATHS.dumps}`);
  io.out(`  logs   emptyDir ${spec.job.storage.logs} at ${CONTAINER_PATHS.logs}`);
  io.out(`  tmp    emptyDir ${spec.job.storage.tmp} at ${CONTAINER_PATHS.tmp}`);
  if (spec.image.runtime.enabled) io.out(`  node-runtime emptyDir ${NODE_RUNTIME_VOLUME_LIMIT} at ${CONTAINER_PATHS.nodeRuntime}`);
  io.out('');
  io.out('Secrets the Job reads (must exist in the namespace):');
  const bySecret = new Map<string, Set<string>>();
  for (const use of secretUses(spec)) {
    const keys = bySecret.get(use.ref.secret) ?? new Set<string>();
    keys.add(use.ref.key);
    bySecret.set(use.ref.secret, keys);
  }
  for (const [secret, keys] of bySecret) io.out(`  ${secret}: ${[...keys].join(', ')}`);
  io.out('');
  io.out('Objects:');
  io.out(`  ServiceAccount/${spec.name}, ConfigMap/${spec.name}-script, ConfigMap/${spec.name}-config, ${spec.job.networkPolicy.enabled ? `NetworkPolicy/${spec.name}, ` : ''}Job/${spec.name}`);
  const deadline = jobDeadlineSeconds(spec);
  if (spec.migration.mode === 'online') {
    const m = spec.migration.online;
    io.out(`  Online: cutover ${m.cutover}, fence ${m.fence}; replication objects dbm_${spec.name}_<database> (publication and slot on the source, subscription on the destination)`);
    if (deadline < m.waitSeconds) {
      io.out(`  ⚠️ job.activeDeadlineSeconds (${deadline}s) ends the Job before migration.online.waitSeconds (${m.waitSeconds}s): `
        + 'replication stops (its objects removed) if the cutover comes later; raise it or leave it unset');
    }
  }
  io.out(`  Job: deadline ${deadline}s, backoffLimit ${spec.job.backoffLimit}, TTL ${spec.job.ttlSecondsAfterFinished}s${spec.migration.dryRun ? ', DRY RUN (no data moves)' : ''}`);
  return 0;
}
