/**
 * `<name>`: the Job that runs the migration once.
 *
 * Built on the low-level 1.28 `KubeJob`, not cdk8s-plus's `Job`: cdk8s-plus fills in opinions of its own
 * (default CPU/memory requests and limits, `imagePullPolicy: Always`, `fsGroupChangePolicy`, `dnsPolicy`,
 * `hostNetwork: false`, a `cdk8s.io/metadata.addr` pod label, ...) and cannot express others we need
 * (`terminationMessagePolicy`, pod-level `seccompProfile`). Undoing each default with JSON patches would tie
 * the output to cdk8s-plus internals; here every field in the YAML is one we chose, from the spec.
 */
import { Construct } from 'constructs';
import * as k8s from '../../imports/k8s';
import { imageReference } from '../spec/image';
import { CONTAINER_PATHS, secretUses } from '../spec/runtime-config';
import { jobDeadlineSeconds, type MigrationSpec } from '../spec/schema';
import { migrationLabels, resourceNames } from './labels';
import { nodeRuntimeInitContainer, nodeRuntimeMount, nodeRuntimeVolume } from './node-runtime';

/** The largest backoffLimit Kubernetes stores (an int32). */
const INT32_MAX = 2_147_483_647;

/** Pod template annotations that change when the runner or its config does, so `kubectl diff` shows it. */
export const RUNNER_SHA256_ANNOTATION = 'db-migration/runner-sha256';
export const CONFIG_SHA256_ANNOTATION = 'db-migration/config-sha256';

/** Read-only for everyone: the container runs as an arbitrary non-root UID. */
const READ_ONLY_MODE = 0o444;

export interface MigrationJobProps {
  /** The validated migration spec. */
  readonly spec: MigrationSpec;
  /** Name of the ConfigMap holding entrypoint.sh, the runner's loader and its manifest. */
  readonly scriptConfigMapName: string;
  /** Names of the ConfigMaps holding the runner's parts, in order (mounted beside the script ConfigMap's files). */
  readonly runnerConfigMapNames: readonly string[];
  /** Name of the ConfigMap holding config.json. */
  readonly runtimeConfigMapName: string;
  /** Name of the ServiceAccount the pod runs as. */
  readonly serviceAccountName: string;
  /** Hex sha256 of runner.js, shown as a pod template annotation. */
  readonly runnerSha256: string;
  /** Hex sha256 of config.json, shown as a pod template annotation. */
  readonly configSha256: string;
}

export class MigrationJob extends Construct {
  /** The Job's name. */
  public readonly name: string;
  /** The underlying object, for escape hatches. */
  public readonly apiObject: k8s.KubeJob;

  constructor(scope: Construct, id: string, props: MigrationJobProps) {
    super(scope, id);
    const { spec } = props;
    const job = spec.job;
    this.name = resourceNames(spec).job;
    const labels = migrationLabels(spec, 'job');

    const uses = secretUses(spec);
    const passwordEnv: k8s.EnvVar[] = uniqueBy(uses.filter((u) => u.kind === 'password'), (u) => u.target)
      .map((u) => ({ name: u.target, valueFrom: { secretKeyRef: { name: u.ref.secret, key: u.ref.key, optional: false } } }));

    // One volume per Secret holding CA certificates, projecting only the keys in use, at tls/<secret>/<key>.
    const caKeysBySecret = new Map<string, Set<string>>();
    for (const u of uses.filter((x) => x.kind === 'caCert')) {
      caKeysBySecret.set(u.ref.secret, (caKeysBySecret.get(u.ref.secret) ?? new Set()).add(u.ref.key));
    }
    const caSecrets = [...caKeysBySecret.keys()].sort();
    const caVolumes: k8s.Volume[] = caSecrets.map((secret, i) => ({
      name: `ca-${i}`,
      secret: {
        secretName: secret,
        items: [...caKeysBySecret.get(secret)!].sort().map((key) => ({ key, path: key })),
        defaultMode: READ_ONLY_MODE,
        optional: false,
      },
    }));
    const caMounts: k8s.VolumeMount[] = caSecrets.map((secret, i) => ({
      name: `ca-${i}`, mountPath: `${CONTAINER_PATHS.tls}/${secret}`, readOnly: true,
    }));

    const quantity = (q: string) => k8s.Quantity.fromString(q);
    const resources: k8s.ResourceRequirements = {
      requests: { cpu: quantity(job.resources.requests.cpu), memory: quantity(job.resources.requests.memory) },
      limits: { cpu: quantity(job.resources.limits.cpu), memory: quantity(job.resources.limits.memory) },
    };
    // The restricted Pod Security profile, for every container (init containers included).
    const securityContext: k8s.SecurityContext = {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    };
    const nodeRuntime = spec.image.runtime.enabled;
    const container: k8s.Container = {
      name: 'runner',
      image: imageReference(spec.image),
      imagePullPolicy: spec.image.pullPolicy,
      command: ['/bin/sh', CONTAINER_PATHS.entrypoint],
      // A retried pod continues what earlier attempts recorded on the destination (see the runner's --resume).
      args: ['--resume'],
      env: [
        // The root filesystem is read-only; tools that write to $HOME (psql history, npm caches) use /tmp.
        { name: 'HOME', value: CONTAINER_PATHS.tmp },
        // Empty overrides an image-level NODE_OPTIONS (the entrypoint also unsets it).
        { name: 'NODE_OPTIONS', value: '' },
        ...passwordEnv,
      ],
      resources,
      securityContext,
      volumeMounts: [
        { name: 'dumps', mountPath: CONTAINER_PATHS.dumps },
        { name: 'logs', mountPath: CONTAINER_PATHS.logs },
        { name: 'tmp', mountPath: CONTAINER_PATHS.tmp },
        { name: 'script', mountPath: CONTAINER_PATHS.runnerDir, readOnly: true },
        { name: 'config', mountPath: CONTAINER_PATHS.config, readOnly: true },
        ...(nodeRuntime ? [nodeRuntimeMount()] : []),
        ...caMounts,
      ],
      terminationMessagePath: CONTAINER_PATHS.terminationLog,
      // The runner writes its summary there; if it dies before that, the log tail explains why.
      terminationMessagePolicy: 'FallbackToLogsOnError',
    };
    const initContainers = nodeRuntime ? [nodeRuntimeInitContainer({ spec, securityContext, resources, scriptVolume: 'script' })] : undefined;

    const volumes: k8s.Volume[] = [
      { name: 'dumps', emptyDir: { sizeLimit: quantity(job.storage.dumps) } },
      { name: 'logs', emptyDir: { sizeLimit: quantity(job.storage.logs) } },
      { name: 'tmp', emptyDir: { sizeLimit: quantity(job.storage.tmp) } },
      scriptVolume(props),
      { name: 'config', configMap: { name: props.runtimeConfigMapName, defaultMode: READ_ONLY_MODE } },
      ...(nodeRuntime ? [nodeRuntimeVolume()] : []),
      ...caVolumes,
    ];

    this.apiObject = new k8s.KubeJob(this, 'Resource', {
      metadata: { name: this.name, labels },
      spec: {
        activeDeadlineSeconds: jobDeadlineSeconds(spec),
        ttlSecondsAfterFinished: job.ttlSecondsAfterFinished,
        ...podsAndRetries(spec),
        podFailurePolicy: podFailurePolicy(),
        template: {
          metadata: {
            labels,
            annotations: {
              // `kubectl logs job/<name>` and `kubectl exec` pick the runner, not the node-runtime init container.
              'kubectl.kubernetes.io/default-container': container.name,
              ...job.annotations,
              [RUNNER_SHA256_ANNOTATION]: props.runnerSha256,
              [CONFIG_SHA256_ANNOTATION]: props.configSha256,
            },
          },
          spec: {
            restartPolicy: 'Never',
            serviceAccountName: props.serviceAccountName,
            automountServiceAccountToken: false,
            imagePullSecrets: nonEmpty(spec.image.pullSecrets.map((name) => ({ name }))),
            securityContext: {
              runAsNonRoot: true,
              runAsUser: job.securityContext.runAsUser,
              runAsGroup: job.securityContext.runAsGroup,
              fsGroup: job.securityContext.fsGroup,
              seccompProfile: { type: 'RuntimeDefault' },
            },
            nodeSelector: Object.keys(job.nodeSelector).length > 0 ? job.nodeSelector : undefined,
            tolerations: nonEmpty(job.tolerations),
            priorityClassName: job.priorityClassName,
            initContainers,
            containers: [container],
            volumes,
          },
        },
      },
    });
  }
}

/**
 * `script`: the script ConfigMap and every runner part in one directory (a projected volume). The parts are optional
 * so that a missing one does not keep the pod waiting to mount it: the loader then names it and stops, in one line.
 */
function scriptVolume(props: MigrationJobProps): k8s.Volume {
  return {
    name: 'script',
    projected: {
      defaultMode: READ_ONLY_MODE,
      sources: [
        { configMap: { name: props.scriptConfigMapName, optional: false } },
        ...props.runnerConfigMapNames.map((name) => ({ configMap: { name, optional: true } })),
      ],
    },
  };
}

/**
 * How many pods and how many retries. job.parallelism: an Indexed Job with one completion per enabled
 * database, in spec order; the Job controller gives each pod its index as JOB_COMPLETION_INDEX. backoffLimit
 * counts failures of the whole Job; with job.backoffLimitPerIndex each database gets its own retries instead
 * (alpha in Kubernetes 1.28, behind the JobBackoffLimitPerIndex feature gate: a server without it ignores the
 * field). The Job-wide backoffLimit still applies alongside it, counting every index's failures together, so
 * it is raised to at least what all indexes may use (completions × (backoffLimitPerIndex + 1)): it never cuts
 * a database's own retries short, and on a server without the gate it is the whole Job's retry budget.
 * Without parallelism: one pod migrates every database (Kubernetes' defaults).
 */
function podsAndRetries(spec: MigrationSpec): Pick<k8s.JobSpec, 'completionMode' | 'completions' | 'parallelism' | 'backoffLimit' | 'backoffLimitPerIndex'> {
  const { parallelism, backoffLimit, backoffLimitPerIndex } = spec.job;
  if (parallelism === undefined) return { backoffLimit };
  const completions = spec.databases.filter((d) => d.enabled).length;
  return {
    completionMode: 'Indexed',
    completions,
    parallelism,
    ...(backoffLimitPerIndex !== undefined
      ? { backoffLimitPerIndex, backoffLimit: Math.min(INT32_MAX, Math.max(backoffLimit, completions * (backoffLimitPerIndex + 1))) }
      : { backoffLimit }),
  };
}

/**
 * How the Job counts a failed pod (podFailurePolicy: beta and on by default since Kubernetes 1.26; it needs
 * restartPolicy Never, which the pod has): a pod evicted, preempted or drained away (condition
 * DisruptionTarget) does not use up backoffLimit, since its replacement resumes where it stopped. Every other
 * failure counts as usual.
 */
function podFailurePolicy(): k8s.PodFailurePolicy {
  return { rules: [{ action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] }] };
}

function nonEmpty<T>(items: readonly T[]): T[] | undefined {
  return items.length > 0 ? [...items] : undefined;
}

function uniqueBy<T>(items: readonly T[], key: (t: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((t) => (seen.has(key(t)) ? false : (seen.add(key(t)), true)));
}
