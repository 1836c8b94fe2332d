/**
 * Just enough of a Kubernetes API server for `kubectl apply --dry-run=client` to run against: discovery for the
 * kinds the chart makes, and 404 NotFound for every object (so kubectl takes the create path, as on a first
 * apply, and prints each object with the annotation it would store). No object is ever stored.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const RESOURCES: Record<string, { name: string; kind: string; namespaced: boolean }[]> = {
  '/api/v1': [
    { name: 'configmaps', kind: 'ConfigMap', namespaced: true },
    { name: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
    { name: 'secrets', kind: 'Secret', namespaced: true },
    { name: 'namespaces', kind: 'Namespace', namespaced: false },
  ],
  '/apis/batch/v1': [{ name: 'jobs', kind: 'Job', namespaced: true }],
  '/apis/networking.k8s.io/v1': [{ name: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true }],
};

const VERBS = ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];

function body(path: string): [number, unknown] {
  if (path === '/api') return [200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [] }];
  if (path === '/apis') {
    const groups = ['batch', 'networking.k8s.io'].map((name) => ({
      name, versions: [{ groupVersion: `${name}/v1`, version: 'v1' }], preferredVersion: { groupVersion: `${name}/v1`, version: 'v1' },
    }));
    return [200, { kind: 'APIGroupList', apiVersion: 'v1', groups }];
  }
  const resources = RESOURCES[path];
  if (resources) {
    const groupVersion = path === '/api/v1' ? 'v1' : path.replace('/apis/', '');
    return [200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources: resources.map((r) => ({ ...r, singularName: '', verbs: VERBS })) }];
  }
  return [404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: `${path} not found`, reason: 'NotFound', code: 404 }];
}

export interface FakeApiServer {
  readonly url: string;
  /** Every request path, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startFakeApiServer(): Promise<FakeApiServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(`${req.method} ${path}`);
    const [status, payload] = req.method === 'GET' ? body(path) : [405, { kind: 'Status', status: 'Failure', code: 405 }];
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
