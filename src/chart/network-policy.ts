/**
 * `<name>`: when job.networkPolicy.enabled, the Job's pods accept no connections and may only reach the
 * database ports and DNS. Built on the low-level 1.28 `KubeNetworkPolicy`: cdk8s-plus's NetworkPolicy models
 * peers as constructs and adds its own selectors, while this policy is a plain list of ports and /32 blocks.
 */
import { isIPv4 } from 'node:net';
import { Construct } from 'constructs';
import * as k8s from '../../imports/k8s';
import { mergedEndpoint } from '../spec/runtime-config';
import type { MigrationSpec } from '../spec/schema';
import { migrationLabels, resourceNames, selectorLabels } from './labels';

export interface MigrationNetworkPolicyProps {
  /** The validated migration spec; the endpoints of its enabled databases are allowed. */
  readonly spec: MigrationSpec;
}

export class MigrationNetworkPolicy extends Construct {
  /** The NetworkPolicy's name. */
  public readonly name: string;
  /** The underlying object, for escape hatches. */
  public readonly apiObject: k8s.KubeNetworkPolicy;

  constructor(scope: Construct, id: string, props: MigrationNetworkPolicyProps) {
    super(scope, id);
    const { spec } = props;
    this.name = resourceNames(spec).networkPolicy;
    this.apiObject = new k8s.KubeNetworkPolicy(this, 'Resource', {
      metadata: { name: this.name, labels: migrationLabels(spec, 'network-policy') },
      spec: {
        podSelector: { matchLabels: selectorLabels(spec) },
        // Ingress listed with no rules: nothing may connect to the pods.
        policyTypes: ['Ingress', 'Egress'],
        egress: [...databaseEgress(spec), dnsEgress()],
      },
    });
  }
}

/**
 * One rule per distinct database port. NetworkPolicy matches IPs, not host names: a port whose hosts are all
 * IPv4 literals is limited to those /32 blocks; a port with any host name is open to every destination.
 */
function databaseEgress(spec: MigrationSpec): k8s.NetworkPolicyEgressRule[] {
  const hostsByPort = new Map<number, Set<string>>();
  for (const db of spec.databases.filter((d) => d.enabled)) {
    for (const side of ['source', 'destination'] as const) {
      const ep = mergedEndpoint(spec, db, side);
      hostsByPort.set(ep.port, (hostsByPort.get(ep.port) ?? new Set()).add(ep.host));
    }
  }
  return [...hostsByPort.entries()].sort(([a], [b]) => a - b).map(([port, hosts]) => {
    const ports = [{ protocol: 'TCP', port: k8s.IntOrString.fromNumber(port) }];
    const all = [...hosts];
    if (!all.every((h) => isIPv4(h))) return { ports };
    return { to: all.sort().map((h) => ({ ipBlock: { cidr: `${h}/32` } })), ports };
  });
}

/** DNS to pods in any namespace (kube-dns / CoreDNS), UDP and TCP (large answers fall back to TCP). */
function dnsEgress(): k8s.NetworkPolicyEgressRule {
  return {
    to: [{ namespaceSelector: {} }],
    ports: [
      { protocol: 'UDP', port: k8s.IntOrString.fromNumber(53) },
      { protocol: 'TCP', port: k8s.IntOrString.fromNumber(53) },
    ],
  };
}
