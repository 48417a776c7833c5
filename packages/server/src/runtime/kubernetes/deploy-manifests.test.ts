import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { SETTINGS } from '../../config.js';
import { makeSpec, runToEnd } from '../conformance/conformance-suite.js';
import { LOCAL_TEST_REGISTRIES } from '../../testing/local-registries.js';
import { KubernetesRuntime } from './kubernetes-runtime.js';
import { envSecretName } from './pod-spec.js';
import { TEST_KUBECONFIG, kubernetesMissing, kubernetesUnavailable } from '../../testing/kubernetes-available.js';

/**
 * deploy/kubernetes/: the manifests that run Corral in a cluster. Static checks (the Deployment's
 * settings, and that the Role grants exactly what the driver's API calls need), then, when the test
 * cluster answers: a server-side dry run of every object, and the driver itself run under the
 * manifests' ServiceAccount and RBAC (create → exec → files → logs → stats → delete), so RBAC that
 * is too narrow fails here.
 */

const run = promisify(execFile);
const REPO = new URL('../../../../../', import.meta.url).pathname;
const DEPLOY = join(REPO, 'deploy', 'kubernetes');
const DRIVER_DIR = new URL('.', import.meta.url).pathname;
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(REPO, '.cache');
const KUBECONFIG = TEST_KUBECONFIG;
const KUBECTL = process.env.CORRAL_KUBECTL ?? join(CACHE, 'kubernetes', 'bin', 'kubectl');
const IMAGE = process.env.CORRAL_K8S_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';

/** The test's own namespaces, in place of the manifests' `corral` and `corral-sandboxes`. */
const NAMESPACES: Record<string, string> = { corral: 'corral-deploy', 'corral-sandboxes': 'corral-deploy-sandboxes' };
/** Cluster-scoped objects get this suffix, so the test never touches a real installation's. */
const CLUSTER_SUFFIX = '-corral-deploy-test';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

function loadFile(file: string): K8sObject[] {
  return parseAllDocuments(readFileSync(join(DEPLOY, file), 'utf8'))
    .map((doc) => doc.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/** The objects kustomization.yaml lists, in its order. */
function loadManifests(): K8sObject[] {
  const kustomization = loadFile('kustomization.yaml')[0] as unknown as { resources: string[] };
  return kustomization.resources.flatMap(loadFile);
}

function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  assert.ok(found, `deploy/kubernetes has no ${kind}${name ? ` ${name}` : ''}`);
  return found;
}

interface Container {
  name: string;
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }>;
  readinessProbe?: { httpGet?: { path: string } };
  livenessProbe?: { httpGet?: { path: string } };
  startupProbe?: { httpGet?: { path: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] } };
}

interface PodTemplate {
  serviceAccountName?: string;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  containers: Container[];
}

function deploymentOf(objects: K8sObject[]): { replicas: number; pod: PodTemplate; container: Container } {
  const deployment = find(objects, 'Deployment', 'corral') as unknown as { spec: { replicas: number; template: { spec: PodTemplate } } };
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  assert.ok(container);
  return { replicas: deployment.spec.replicas, pod, container };
}

function envOf(container: Container, name: string): NonNullable<Container['env']>[number] {
  const entry = container.env?.find((e) => e.name === name);
  assert.ok(entry, `the corral container does not set ${name}`);
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Which permissions the driver's calls need, read from its sources.

/** One permission: a verb on a resource (`pods`, `pods/exec`) of an API group, namespaced or not. */
interface Permission {
  group: string;
  resource: string;
  verb: string;
  clusterScoped: boolean;
  /** The driver call that needs it. */
  why: string;
}

const VERB_OF_PREFIX: Array<[string, string]> = [
  ['deleteCollection', 'deletecollection'],
  ['create', 'create'],
  ['read', 'get'],
  ['replace', 'update'],
  ['patch', 'patch'],
  ['delete', 'delete'],
  ['list', 'list'],
];

/** `PodLog` → `pods/log`, `NetworkPolicy` → `networkpolicies`, `Pod` → `pods`. */
function resourceOfKind(kind: string): string {
  const sub: Record<string, string> = { PodLog: 'pods/log', PodStatus: 'pods/status', PodExec: 'pods/exec', PodAttach: 'pods/attach' };
  if (sub[kind]) return sub[kind];
  const lower = kind.toLowerCase();
  return lower.endsWith('y') ? `${lower.slice(0, -1)}ies` : `${lower}s`;
}

/** The permission a `@kubernetes/client-node` API method needs (`createNamespacedPod` → create pods). */
function permissionOfMethod(method: string, group: string): Omit<Permission, 'why'> | undefined {
  for (const [prefix, verb] of VERB_OF_PREFIX) {
    if (!method.startsWith(prefix)) continue;
    let rest = method.slice(prefix.length);
    const namespaced = rest.startsWith('Namespaced');
    if (namespaced) rest = rest.slice('Namespaced'.length);
    if (rest.endsWith('ForAllNamespaces')) return { group, resource: resourceOfKind(rest.slice(0, -'ForAllNamespaces'.length)), verb, clusterScoped: true };
    if (!/^[A-Z]\w*$/.test(rest)) return undefined;
    // Namespace objects are granted per namespace by a Role in it (only `get` is needed).
    return { group, resource: resourceOfKind(rest), verb, clusterScoped: !namespaced && rest !== 'Namespace' };
  }
  return undefined;
}

function methodsOf(api: object): string[] {
  return Object.getOwnPropertyNames(api).filter((name) => name !== 'constructor');
}

/** The non-test sources of the driver, by file name. */
function driverSources(): Map<string, string> {
  const sources = new Map<string, string>();
  for (const file of readdirSync(DRIVER_DIR)) {
    if (file.endsWith('.ts') && !file.endsWith('.test.ts')) sources.set(file, readFileSync(join(DRIVER_DIR, file), 'utf8'));
  }
  return sources;
}

/**
 * Every permission the driver's sources need: each `@kubernetes/client-node` API method they call
 * (`.createNamespacedPod(`…), the informer's list + watch, and the exec websocket.
 */
function permissionsNeeded(): Permission[] {
  const apis: Array<[object, string]> = [
    [CoreV1Api.prototype, ''],
    [NetworkingV1Api.prototype, 'networking.k8s.io'],
  ];
  const needed: Permission[] = [];
  for (const [file, source] of driverSources()) {
    for (const [api, group] of apis) {
      for (const method of methodsOf(api)) {
        if (!new RegExp(`\\.${method}\\(`).test(source)) continue;
        const permission = permissionOfMethod(method, group);
        assert.ok(permission, `${file} calls ${method}, which this test cannot map to an RBAC permission: extend permissionOfMethod`);
        needed.push({ ...permission, why: `${file}: ${method}` });
      }
    }
    for (const match of source.matchAll(/makeInformer<\w+>\(\s*\w+,\s*`\/api\/v1\/namespaces\/\$\{\w+\}\/(\w+)`/g)) {
      for (const verb of ['list', 'watch']) needed.push({ group: '', resource: match[1] as string, verb, clusterScoped: false, why: `${file}: informer` });
    }
    if (source.includes('/exec?')) needed.push({ group: '', resource: 'pods/exec', verb: 'get', clusterScoped: false, why: `${file}: exec websocket (a GET)` });
  }
  return needed;
}

/**
 * Rules the Role grants on purpose though no driver source calls them: exec's `create` (the verb
 * websocket execs need from Kubernetes 1.30, and SPDY clients always).
 */
const GRANTED_AHEAD = new Set(['/pods/exec/create']);

/** Calls the manifests make unnecessary, and why. */
const NOT_NEEDED_WITH_MANIFESTS: Record<string, string> = {
  '/namespaces/create': 'namespaces.yaml makes the sandbox namespace; the driver creates it only when it is missing',
};

function key(p: { group: string; resource: string; verb: string }): string {
  return `${p.group}/${p.resource}/${p.verb}`;
}

function grants(rules: PolicyRule[]): Set<string> {
  const out = new Set<string>();
  for (const rule of rules) for (const group of rule.apiGroups) for (const resource of rule.resources) for (const verb of rule.verbs) out.add(`${group}/${resource}/${verb}`);
  return out;
}

describe('deploy/kubernetes manifests', () => {
  const objects = loadManifests();

  test('kustomization.yaml lists every manifest but the Secret example', () => {
    const listed = (loadFile('kustomization.yaml')[0] as unknown as { resources: string[] }).resources.sort();
    const files = readdirSync(DEPLOY).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && f !== 'secret.example.yaml').sort();
    assert.deepEqual(listed, files);
  });

  test('the Deployment runs ≥ 2 replicas of the kubernetes driver, its secrets from a Secret, probes on /healthz, non-root', () => {
    const { replicas, pod, container } = deploymentOf(objects);
    assert.ok(replicas >= 2, `replicas: ${replicas}`);
    assert.equal(envOf(container, 'CORRAL_RUNTIME').value, 'kubernetes');
    for (const name of ['DATABASE_URL', 'CORRAL_GATEWAY_SECRET']) {
      const entry = envOf(container, name);
      assert.equal(entry.value, undefined, `${name} must not be written in the manifest`);
      assert.equal(entry.valueFrom?.secretKeyRef?.name, 'corral', `${name} comes from the Secret corral`);
    }
    // One deployment: every replica the same instance id (a literal), each its own replica id (the Pod's name).
    assert.ok(envOf(container, 'CORRAL_INSTANCE_ID').value, 'CORRAL_INSTANCE_ID is one literal for every replica');
    assert.equal(envOf(container, 'CORRAL_REPLICA_ID').valueFrom?.fieldRef?.fieldPath, 'metadata.name');
    assert.match(envOf(container, 'CORRAL_K8S_SERVER_PODS').value ?? '', /^corral\//, 'the sandboxes admit the API Pods');
    // Every variable the container sets is a setting the server reads (config.ts).
    const known = new Set(SETTINGS.map((s) => s.env));
    for (const entry of container.env ?? []) assert.ok(known.has(entry.name), `${entry.name} is not a setting in config.ts`);
    for (const probe of [container.readinessProbe, container.livenessProbe, container.startupProbe]) assert.equal(probe?.httpGet?.path, '/healthz');
    assert.ok(container.resources?.requests?.cpu && container.resources.requests.memory, 'resource requests');
    assert.ok(container.resources?.limits?.memory, 'a memory limit');
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.ok((pod.securityContext?.runAsUser ?? 0) > 0);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL']);
    assert.equal(container.securityContext?.capabilities?.add, undefined);
  });

  test('the ServiceAccount is bound to the Role in the sandbox namespace the Deployment names', () => {
    const { pod, container } = deploymentOf(objects);
    const sandboxNamespace = envOf(container, 'CORRAL_K8S_NAMESPACE').value;
    const account = find(objects, 'ServiceAccount', pod.serviceAccountName);
    const binding = find(objects, 'RoleBinding') as unknown as { metadata: { namespace: string }; roleRef: { kind: string; name: string }; subjects: Array<{ kind: string; name: string; namespace: string }> };
    assert.equal(binding.metadata.namespace, sandboxNamespace);
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: account.metadata.name, namespace: account.metadata.namespace }]);
    const role = find(objects, binding.roleRef.kind, binding.roleRef.name);
    assert.equal(role.metadata.namespace, sandboxNamespace);
    // The only cluster-wide grant is reading nodes.
    for (const clusterRole of objects.filter((o) => o.kind === 'ClusterRole')) {
      assert.deepEqual(grants(clusterRole.rules as PolicyRule[]), new Set(['/nodes/list']));
    }
  });

  test('the Role grants exactly what the driver calls need (and the ClusterRole the cluster-wide ones)', () => {
    const needed = permissionsNeeded();
    assert.ok(needed.some((p) => p.resource === 'pods' && p.verb === 'create'), 'the scan found no Pod create: is it reading the driver?');
    const role = grants(find(objects, 'Role', 'corral-driver').rules as PolicyRule[]);
    const clusterRole = grants(find(objects, 'ClusterRole', 'corral-node-reader').rules as PolicyRule[]);
    const missing = needed.filter((p) => !(p.clusterScoped ? clusterRole : role).has(key(p)) && !(key(p) in NOT_NEEDED_WITH_MANIFESTS));
    assert.deepEqual(missing.map((p) => `${key(p)} (${p.why})`), [], 'permissions the driver needs that the manifests do not grant');
    const neededKeys = new Set(needed.map(key));
    const unused = [...role, ...clusterRole].filter((k) => !neededKeys.has(k) && !GRANTED_AHEAD.has(k));
    assert.deepEqual(unused, [], 'granted but not used by the driver');
  });

  test('the scan maps client methods to the permissions RBAC checks', () => {
    assert.deepEqual(permissionOfMethod('createNamespacedPod', ''), { group: '', resource: 'pods', verb: 'create', clusterScoped: false });
    assert.deepEqual(permissionOfMethod('readNamespacedPodLog', ''), { group: '', resource: 'pods/log', verb: 'get', clusterScoped: false });
    assert.deepEqual(permissionOfMethod('replaceNamespacedSecret', ''), { group: '', resource: 'secrets', verb: 'update', clusterScoped: false });
    assert.deepEqual(permissionOfMethod('listNode', ''), { group: '', resource: 'nodes', verb: 'list', clusterScoped: true });
    assert.deepEqual(permissionOfMethod('readNamespace', ''), { group: '', resource: 'namespaces', verb: 'get', clusterScoped: false });
    assert.deepEqual(permissionOfMethod('patchNamespacedNetworkPolicy', 'networking.k8s.io'), { group: 'networking.k8s.io', resource: 'networkpolicies', verb: 'patch', clusterScoped: false });
    assert.deepEqual(permissionOfMethod('listPodForAllNamespaces', ''), { group: '', resource: 'pods', verb: 'list', clusterScoped: true });
  });
});

// ---------------------------------------------------------------------------------------------
// Against the test cluster.

/** Why the cluster tests cannot run here, or undefined when the cluster answers. */
async function clusterMissing(): Promise<string | undefined> {
  const cluster = await kubernetesMissing(KUBECONFIG);
  if (cluster !== undefined) return cluster;
  if (!existsSync(KUBECTL)) return `no kubectl at ${KUBECTL} (scripts/ensure-kubernetes.sh builds it; or set CORRAL_KUBECTL)`;
  try {
    await run(KUBECTL, ['--kubeconfig', KUBECONFIG, '--request-timeout=3s', 'get', '--raw', '/readyz'], { timeout: 5000 });
    return undefined;
  } catch (error) {
    return `the Kubernetes API of ${KUBECONFIG} does not answer (${(error as Error).message.split('\n')[0]}); run scripts/ensure-kubernetes.sh`;
  }
}

/** The objects with the test's namespaces and cluster-scoped names (see NAMESPACES, CLUSTER_SUFFIX). */
function rendered(objects: K8sObject[]): K8sObject[] {
  const ns = (name: string): string => NAMESPACES[name] ?? name;
  const text = JSON.stringify(objects, (k, v: unknown) => {
    if (k === 'namespace' && typeof v === 'string') return ns(v);
    return v;
  });
  const out = JSON.parse(text) as K8sObject[];
  for (const o of out) {
    if (o.kind === 'Namespace') o.metadata.name = ns(o.metadata.name);
    if (o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding') o.metadata.name += CLUSTER_SUFFIX;
    if (o.kind === 'ClusterRoleBinding') (o.roleRef as { name: string }).name += CLUSTER_SUFFIX;
    if (o.kind === 'Deployment') {
      const container = (o.spec as { template: { spec: PodTemplate } }).template.spec.containers[0] as Container;
      for (const entry of container.env ?? []) if (entry.name === 'CORRAL_K8S_NAMESPACE' && entry.value) entry.value = ns(entry.value);
    }
  }
  return out;
}

function kubectl(args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(KUBECTL, ['--kubeconfig', KUBECONFIG, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`kubectl ${args.join(' ')}: ${stderr || error.message}`));
      else resolve({ stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

function toYaml(objects: K8sObject[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}

const reason = await clusterMissing();
if (reason !== undefined) kubernetesUnavailable('deploy/kubernetes on the test cluster', reason);
describe('deploy/kubernetes on the test cluster', { skip: reason }, () => {
  const objects = rendered([...loadManifests(), ...loadFile('secret.example.yaml')]);
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  const dir = mkdtempSync(join(tmpdir(), 'corral-deploy-test-'));

  before(async () => {
    // A dry run of objects in a namespace that does not exist fails: the namespaces are real. One
    // an earlier run is still deleting must be gone first.
    await kubectl(['wait', '--for=delete', '--timeout=90s', ...namespaces.map((o) => `namespace/${o.metadata.name}`)]).catch(() => undefined);
    await kubectl(['apply', '-f', '-'], toYaml(namespaces));
  });

  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    const cluster = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding').map((o) => `${o.kind.toLowerCase()}/${o.metadata.name}`);
    await kubectl(['delete', '--ignore-not-found', ...cluster]).catch(() => undefined);
    await kubectl(['delete', 'namespace', '--ignore-not-found', '--wait=false', ...namespaces.map((o) => o.metadata.name)]).catch(() => undefined);
  });

  test('kubectl apply -k builds the kustomization', async () => {
    const { stdout } = await kubectl(['kustomize', DEPLOY]);
    const kinds = parseAllDocuments(stdout).map((d) => (d.toJS() as K8sObject).kind);
    assert.deepEqual(kinds.sort(), loadManifests().map((o) => o.kind).sort());
  });

  test('every object passes a server-side dry run (schema, admission, RBAC escalation checks)', async () => {
    const { stdout } = await kubectl(['apply', '--dry-run=server', '-f', '-'], toYaml(objects));
    for (const o of objects) {
      if (o.kind === 'Namespace') continue;
      const group = o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : '';
      const line = `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
      assert.match(stdout, new RegExp(`^${line.replaceAll('.', '\\.')} (created|configured|unchanged) \\(server dry run\\)$`, 'm'), `no dry-run line for ${line} in:\n${stdout}`);
    }
  });

  test('a Deployment the API server refuses fails the dry run (the check can fail)', async () => {
    const broken = rendered(loadManifests()).filter((o) => o.kind === 'Deployment');
    const spec = broken[0]?.spec as { selector: { matchLabels: Record<string, string> } };
    spec.selector.matchLabels = { 'app.kubernetes.io/name': 'not-the-template' };
    // --validate=false: the refusal is the API server's, not kubectl's schema check.
    await assert.rejects(kubectl(['apply', '--dry-run=server', '--validate=false', '-f', '-'], toYaml(broken)), /`selector` does not match template `labels`/);
  });

  test('the driver works under the manifests ServiceAccount and RBAC: create, exec, files, logs, stats, delete', { timeout: 240_000 }, async () => {
    const rbac = objects.filter((o) => ['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind));
    await kubectl(['apply', '-f', '-'], toYaml(rbac));
    const account = rbac.find((o) => o.kind === 'ServiceAccount') as K8sObject;
    const sandboxNamespace = (rbac.find((o) => o.kind === 'Role') as K8sObject).metadata.namespace as string;
    const token = await serviceAccountToken(account.metadata.namespace as string, account.metadata.name);
    const admin = new KubeConfig();
    admin.loadFromFile(KUBECONFIG);
    const cluster = admin.getCurrentCluster();
    assert.ok(cluster);
    const kubeconfigPath = join(dir, 'service-account.kubeconfig');
    writeFileSync(
      kubeconfigPath,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'test', cluster: { server: cluster.server, 'certificate-authority-data': cluster.caData } }],
        users: [{ name: 'corral', user: { token } }],
        contexts: [{ name: 'corral', context: { cluster: 'test', user: 'corral', namespace: sandboxNamespace } }],
        'current-context': 'corral',
      }),
      { mode: 0o600 },
    );
    // The account reaches nothing outside the sandbox namespace.
    const can = (args: string[]): Promise<string> =>
      new Promise((resolve) => {
        execFile(KUBECTL, ['--kubeconfig', KUBECONFIG, 'auth', 'can-i', '--as', `system:serviceaccount:${account.metadata.namespace}:${account.metadata.name}`, ...args], (_error, stdout) => resolve(stdout.trim()));
      });
    assert.equal(await can(['create', 'pods', '-n', sandboxNamespace]), 'yes');
    assert.equal(await can(['list', 'pods', '-n', 'default']), 'no');
    assert.equal(await can(['get', 'secrets', '-n', account.metadata.namespace as string]), 'no');
    assert.equal(await can(['create', 'namespaces']), 'no');
    assert.equal(await can(['delete', 'nodes']), 'no');

    const runtime = new KubernetesRuntime({
      instance: `deploy-${randomBytes(4).toString('hex')}`,
      namespace: sandboxNamespace,
      kubeconfigPath,
      binDir: join(CACHE, 'kubernetes-driver-bin'),
      insecureRegistries: [...LOCAL_TEST_REGISTRIES],
      cpuRequestFraction: 0.01,
    });
    try {
      await runtime.init();
      const spec = makeSpec(IMAGE, { env: { GREETING: 'from-a-secret' }, startCommand: 'echo started; sleep 3600', networkAccess: true });
      const { runtimeId } = await runtime.create(spec);
      const r = await runToEnd(runtime, runtimeId, 'echo "$GREETING"');
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'from-a-secret');
      await runtime.putFile(runtimeId, '/tmp/f', Readable.from([Buffer.from('payload')]));
      const file = await runtime.getFile(runtimeId, '/tmp/f');
      const chunks: Buffer[] = [];
      for await (const chunk of file.stream) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'payload');
      // The driver swallows a failed owner-reference update: check the Secret got it.
      const owner = await kubectl(['-n', sandboxNamespace, 'get', 'secret', envSecretName(runtimeId), '-o', 'jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}']);
      assert.equal(owner.stdout, `Pod/${runtimeId}`);
      // Exec works before the kubelet reports the container running; the log API answers only after.
      let logs = '';
      for (let i = 0; i < 50 && !logs.includes('started'); i++) {
        logs = await runtime.logs(runtimeId, 1024).catch((e: Error) => e.message);
        if (!logs.includes('started')) await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(logs, /started/);
      assert.ok((await runtime.stats(runtimeId)).memoryLimitBytes > 0);
      assert.ok((await runtime.diskCapacity())?.totalBytes, 'node storage read through the ClusterRole');
      await runtime.remove(runtimeId);
      assert.equal(await runtime.inspect(runtimeId), undefined);
    } finally {
      for (const s of await runtime.list().catch(() => [])) await runtime.remove(s.runtimeId).catch(() => undefined);
      await runtime.close();
    }
  });
});

/** The token of a ServiceAccount (Kubernetes ≤ 1.23 makes a token Secret for it; newer: the TokenRequest API). */
async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { stdout } = await kubectl(['-n', namespace, 'get', 'serviceaccount', name, '-o', 'jsonpath={.secrets[0].name}']);
    if (stdout.trim()) {
      const secret = await kubectl(['-n', namespace, 'get', 'secret', stdout.trim(), '-o', 'jsonpath={.data.token}']);
      if (secret.stdout.trim()) return Buffer.from(secret.stdout.trim(), 'base64').toString('utf8');
    }
    if (Date.now() > deadline) {
      const created = await kubectl(['-n', namespace, 'create', 'token', name]).catch(() => undefined);
      if (created) return created.stdout.trim();
      throw new Error(`no token for service account ${namespace}/${name} within 30 s`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
