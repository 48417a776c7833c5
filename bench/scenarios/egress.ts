import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSpec, runToEnd } from '../../packages/server/src/runtime/conformance/conformance-suite.js';
import { ImageStore } from '../../packages/server/src/runtime/oci-images/image-store.js';
import { OciRuntime } from '../../packages/server/src/runtime/oci/oci-runtime.js';
import type { EgressPolicy } from '../../packages/server/src/runtime/runtime.js';
import { TestInternet } from '../../packages/server/src/testing/test-internet.js';
import { machine, percentiles, report, type Baseline } from '../lib/results.js';

const IMAGE = process.env.CORRAL_OCI_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const CACHE = process.env.CORRAL_CACHE_DIR ?? join(new URL('../../', import.meta.url).pathname, '.cache');

/**
 * `npm run bench -- egress [--runs 20] [--connects 100]`: what an egress policy costs on the oci
 * driver (runc, or CORRAL_OCI_RUNTIME), against the test internet (testing/test-internet.ts):
 * - create time (create() until it resolves) with an allow list and with a deny list, beside the
 *   same create without a policy, interleaved in one run;
 * - connection setup through the policy: one exec of `nc` opening an HTTP connection and reading
 *   the answer, by address and by name (the name through the resolver, which opens the answer's
 *   address in the firewall before answering), beside the same in a sandbox without a policy
 *   (whose names also go through the resolver, without a firewall update). The exec itself (~3 ms)
 *   is in every figure.
 */
export async function run(args: string[]): Promise<void> {
  const opt = (name: string, fallback: number): number => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const runs = opt('runs', 20);
  const connects = opt('connects', 100);
  const stateDir = join(CACHE, 'oci-test'); // the tests' image store: the image is pulled once
  const instance = `bench-${randomBytes(4).toString('hex')}`;
  const internet = await TestInternet.start();
  const binary = process.env.CORRAL_OCI_RUNTIME ?? 'runc';
  const runtime = new OciRuntime({
    instance,
    stateDir,
    runtimeBinary: binary,
    images: new ImageStore({ root: join(stateDir, 'images'), insecureRegistries: [IMAGE.split('/')[0] ?? ''] }),
    egressDnsUpstream: internet.dnsAddress,
  });
  try {
    await runtime.init();
    const policies: Record<string, EgressPolicy | undefined> = {
      open: undefined,
      allow: { allowlist: ['*.example.test', internet.unnamedAddress], denylist: null },
      deny: { allowlist: null, denylist: ['*.other.test', 'blocked.example.test'] },
    };
    const createMs: Record<string, number[]> = { open: [], allow: [], deny: [] };
    const timeCreate = async (kind: string): Promise<void> => {
      const started = performance.now();
      const { runtimeId } = await runtime.create(makeSpec(IMAGE, { networkAccess: true, egress: policies[kind] }));
      (createMs[kind] as number[]).push(performance.now() - started);
      await runtime.remove(runtimeId);
    };
    for (const kind of ['open', 'allow', 'deny']) await timeCreate(kind); // warm-up
    for (const kind of Object.keys(createMs)) (createMs[kind] as number[]).length = 0;
    for (let i = 0; i < runs; i++) for (const kind of ['open', 'allow', 'deny']) await timeCreate(kind);

    const open = await runtime.create(makeSpec(IMAGE, { networkAccess: true }));
    const allow = await runtime.create(makeSpec(IMAGE, { networkAccess: true, egress: policies.allow }));
    const connectMs = async (runtimeId: string, target: string): Promise<number[]> => {
      const ms: number[] = [];
      for (let i = 0; i < connects; i++) {
        const started = performance.now();
        const r = await runToEnd(runtime, runtimeId, `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${target} 80`);
        if (!r.stdout.includes('hello from')) throw new Error(`connection to ${target} failed: ${r.stderr}`);
        ms.push(performance.now() - started);
      }
      return ms;
    };
    const api = internet.address('api.example.test');
    await connectMs(allow.runtimeId, 'api.example.test'); // opens api's address for the by-address runs
    const results = {
      openByAddress: await connectMs(open.runtimeId, api),
      allowByAddress: await connectMs(allow.runtimeId, api),
      openByName: await connectMs(open.runtimeId, 'api.example.test'),
      allowByName: await connectMs(allow.runtimeId, 'api.example.test'),
    };
    await runtime.remove(open.runtimeId);
    await runtime.remove(allow.runtimeId);

    const mine = percentiles(createMs.allow ?? []);
    const baselines: Baseline[] = [
      { name: 'create, no policy (baseline)', ...percentiles(createMs.open ?? []) },
      { name: 'create, deny list', ...percentiles(createMs.deny ?? []) },
      { name: 'connect by address, no policy (baseline)', ...percentiles(results.openByAddress) },
      { name: 'connect by address, allow list', ...percentiles(results.allowByAddress) },
      { name: 'connect by name, no policy (baseline)', ...percentiles(results.openByName) },
      { name: 'connect by name, allow list', ...percentiles(results.allowByName) },
    ];
    const ratio = (a: number[], b: number[]): number => Math.round((percentiles(a).p50_ms / percentiles(b).p50_ms) * 100) / 100;
    report({
      scenario: 'egress',
      driver: 'oci',
      machine: machine(),
      runs,
      corral: { ...mine, name: 'create, allow list', oci_runtime: binary, connects },
      baselines,
      ratio_p50: {
        'create, no policy': ratio(createMs.open ?? [], createMs.allow ?? []),
        'connect by address, no policy': ratio(results.openByAddress, results.allowByAddress),
        'connect by name, no policy': ratio(results.openByName, results.allowByName),
      },
    });
  } finally {
    for (const s of await runtime.list().catch(() => [])) await runtime.remove(s.runtimeId).catch(() => undefined);
    await runtime.close();
    await internet.close();
    await rm(join(stateDir, 'instances', instance), { recursive: true, force: true });
  }
}
