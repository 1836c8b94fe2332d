/**
 * Kubernetes 1.28 API types for the low-level constructs (KubeJob, KubeNetworkPolicy, ...).
 *
 * `cdk8s import k8s` downloads the OpenAPI document from the internet, which the build machines cannot reach.
 * cdk8s-plus-28 ships exactly that generated module for Kubernetes 1.28 (the cluster version we target), so we
 * re-export it instead of keeping a 20k-line generated copy in the repository. Same classes, same types: an
 * object built with these is interchangeable with the ones cdk8s-plus-28 builds.
 */
export * from 'cdk8s-plus-28/lib/imports/k8s';
