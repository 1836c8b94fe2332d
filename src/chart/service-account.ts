/**
 * `<name>`: the Job's own identity. The runner never calls the Kubernetes API, so no token is mounted and no
 * Role is bound; a dedicated account keeps the namespace's default one out of it.
 */
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import type { MigrationSpec } from '../spec/schema';
import { migrationLabels, resourceNames } from './labels';

export interface MigrationServiceAccountProps {
  /** The validated migration spec (name, namespace, labels). */
  readonly spec: MigrationSpec;
}

export class MigrationServiceAccount extends kplus.ServiceAccount {
  constructor(scope: Construct, id: string, props: MigrationServiceAccountProps) {
    super(scope, id, {
      metadata: { name: resourceNames(props.spec).serviceAccount, labels: migrationLabels(props.spec, 'runner') },
      automountToken: false,
    });
  }
}
