import { randomBytes } from 'node:crypto';
import { KubernetesRuntime } from '../packages/server/src/runtime/kubernetes/kubernetes-runtime.js';
import { runToEnd, makeSpec } from '../packages/server/src/runtime/conformance/conformance-suite.js';

const mode = (process.argv[2] ?? 'agent') as 'agent' | 'api' | 'auto';
const runtime = new KubernetesRuntime({ instance: `m-${randomBytes(3).toString('hex')}`, namespace: 'corral-k8s-agent', kubeconfigPath: '/work/main/.cache/kubernetes/kubeconfig', binDir: '/work/main/.cache/kubernetes-driver-bin', insecureRegistries: ['127.0.0.1:5000'], cpuRequestFraction: 0.01, exec: mode });
await runtime.init();
const creates: number[] = [], firsts: number[] = [], execs: number[] = [];
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const { runtimeId } = await runtime.create(makeSpec('127.0.0.1:5000/corral/busybox:latest', { networkAccess: true }));
  const t1 = performance.now();
  const r = await runToEnd(runtime, runtimeId, { argv: ['true'] });
  const t2 = performance.now();
  creates.push(t1 - t0); firsts.push(t2 - t0);
  if (r.exitCode !== 0) throw new Error('exit ' + r.exitCode);
  for (let j = 0; j < 20; j++) { const a = performance.now(); await runToEnd(runtime, runtimeId, { argv: ['true'] }); execs.push(performance.now() - a); }
  if (i === 0) console.log('whoami-env', (await runToEnd(runtime, runtimeId, 'cat /proc/1/cmdline | tr "\\0" " "; echo; env | grep -c CORRAL_AGENT_SECRET; cat /proc/1/environ 2>&1 | head -c 100')).stdout);
  await runtime.remove(runtimeId);
}
const med = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]!.toFixed(1); };
console.log(mode, 'create', creates.map((x) => x.toFixed(0)).join(','), 'create→first exec done', firsts.map((x) => x.toFixed(0)).join(','), 'exec true median', med(execs), 'p90', [...execs].sort((a,b)=>a-b)[Math.floor(execs.length*0.9)]!.toFixed(1), 'min', Math.min(...execs).toFixed(1));
await runtime.close();
