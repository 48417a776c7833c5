import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConnectionError, CorralClient, Sandbox } from '@corral/sdk';
import { type SandboxRuntime, createRuntime, loadConfig, openStore } from '@corral/server';
import { TEST_IMAGE, createScratchDatabase, deleteKubernetesNamespace, dockerMissing, dropScratchDatabase, kubernetesMissing, kubernetesUnavailable, TEST_KUBECONFIG, unavailableSuite } from '@corral/server/testing';
import { startRoundRobinForwarder, type RoundRobinForwarder } from '../testing/round-robin-forwarder.js';
import { spawnCli, waitForHealthy } from '../testing/spawn-cli.js';

/**
 * Issue 14's "done when": two `corral serve` replicas of one deployment on one PostgreSQL, behind a
 * round-robin forwarder (a Service), each SIGKILLed in turn (and restarted) while a client creates,
 * execs in and deletes sandboxes. Every call succeeds with the client's retries, every sandbox ends
 * deleted, and the runtime keeps nothing without a row.
 */

const DATABASE_URL = process.env.CORRAL_TEST_DATABASE_URL;
const KUBECONFIG = TEST_KUBECONFIG;
const K8S_IMAGE = process.env.CORRAL_K8S_TEST_IMAGE ?? '127.0.0.1:5000/corral/busybox:latest';
const K8S_NAMESPACE = 'corral-replicas';

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Variant {
  driver: 'docker' | 'kubernetes';
  image: string;
  /** Client cycles (create, exec, delete) per worker. */
  cycles: number;
  workers: number;
  env: Record<string, string>;
  /** One data directory for both replicas (docker: its loop disks and etc files are per host). */
  sharedDataDir: boolean;
}

const variants: Array<Variant | { driver: string; missing: string; ci: boolean }> = [];
if (!DATABASE_URL) variants.push({ driver: 'docker', missing: 'CORRAL_TEST_DATABASE_URL is not set (scripts/ensure-postgres.sh prints one)', ci: true });
else {
  const docker = dockerMissing();
  variants.push(docker ? { driver: 'docker', missing: docker, ci: true } : { driver: 'docker', image: TEST_IMAGE, cycles: 5, workers: 3, env: {}, sharedDataDir: true });
  const k8s = await kubernetesMissing(KUBECONFIG);
  variants.push(
    k8s
      ? { driver: 'kubernetes', missing: k8s, ci: false }
      : { driver: 'kubernetes', image: K8S_IMAGE, cycles: 3, workers: 2, env: { KUBECONFIG, CORRAL_K8S_NAMESPACE: K8S_NAMESPACE }, sharedDataDir: false },
  );
}

for (const entry of variants) {
  if ('missing' in entry) {
    if (entry.ci) unavailableSuite(`two replicas, each killed in turn (${entry.driver})`, entry.missing);
    else kubernetesUnavailable(`two replicas, each killed in turn (${entry.driver})`, entry.missing);
    continue;
  }
  const variant: Variant = entry;
  describe(`two replicas, each killed in turn (${variant.driver})`, { timeout: 600_000 }, () => {
    const tag = randomBytes(4).toString('hex');
    const deployment = `replicas-${tag}`;
    const database = `corral_replicas_${tag}`;
    let databaseUrl = '';
    const key = `corral_replicas_${randomBytes(12).toString('hex')}`;
    const dataDirs = variant.sharedDataDir ? [mkdtempSync(join(tmpdir(), 'corral-replicas-'))] : [mkdtempSync(join(tmpdir(), 'corral-replica-a-')), mkdtempSync(join(tmpdir(), 'corral-replica-b-'))];
    let ports: number[] = [];
    let forwarder: RoundRobinForwarder;
    const replicas: Array<ChildProcess | undefined> = [undefined, undefined];
    const logs: string[] = ['', ''];

    /** Each start of a replica is a new process with a new replica id. */
    const replicaIds = ['', ''];
    let starts = 0;
    const envOf = (index: number): NodeJS.ProcessEnv => ({
      CORRAL_REPLICA_ID: replicaIds[index] as string,
      DATABASE_URL: databaseUrl,
      CORRAL_DATA_DIR: dataDirs[index % dataDirs.length] as string,
      CORRAL_PORT: String(ports[index]),
      CORRAL_PUBLIC_URL: forwarder.url,
      CORRAL_RUNTIME: variant.driver,
      CORRAL_INSTANCE_ID: deployment,
      CORRAL_GATEWAY_SECRET: `secret-${tag}-shared-by-the-replicas`,
      CORRAL_BOOTSTRAP_API_KEY: key,
      CORRAL_RECONCILE_INTERVAL_MS: '500',
      CORRAL_REPLICA_LEASE_MS: '3000',
      CORRAL_LOG_LEVEL: 'warn',
      CORRAL_REGISTRY_INSECURE: '127.0.0.1:5000,127.0.0.1:5001',
      ...variant.env,
    });

    async function start(index: number): Promise<void> {
      replicaIds[index] = `replica-${index}-${++starts}`;
      const child = spawnCli(['serve'], envOf(index));
      child.stderr?.on('data', (chunk: Buffer) => (logs[index] = (logs[index] + chunk.toString()).slice(-20_000)));
      child.stdout?.on('data', (chunk: Buffer) => (logs[index] = (logs[index] + chunk.toString()).slice(-20_000)));
      replicas[index] = child;
      try {
        await waitForHealthy(`http://127.0.0.1:${ports[index]}/healthz`, 120_000);
      } catch (error) {
        throw new Error(`replica ${index} did not start: ${String(error)}\n${logs[index]}`);
      }
    }

    async function kill(index: number): Promise<void> {
      const child = replicas[index];
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    }

    /** A driver instance of the deployment in this process (the kubernetes driver reads KUBECONFIG from the process's environment). */
    async function withRuntime<T>(work: (runtime: SandboxRuntime) => Promise<T>): Promise<T> {
      const saved = process.env.KUBECONFIG;
      if (variant.env.KUBECONFIG !== undefined) process.env.KUBECONFIG = variant.env.KUBECONFIG;
      try {
        const runtime = await createRuntime(loadConfig({ env: { ...process.env, ...envOf(0) } }));
        assert.ok(runtime);
        try {
          return await work(runtime);
        } finally {
          await runtime.close();
        }
      } finally {
        if (saved === undefined) delete process.env.KUBECONFIG;
        else process.env.KUBECONFIG = saved;
      }
    }

    before(async () => {
      databaseUrl = await createScratchDatabase(DATABASE_URL as string, database);
      ports = [await freePort(), await freePort()];
      forwarder = await startRoundRobinForwarder(ports);
    });

    after(async () => {
      await kill(0);
      await kill(1);
      await forwarder.close();
      await withRuntime(async (runtime) => {
        for (const c of await runtime.list()) await runtime.remove(c.runtimeId).catch(() => undefined);
      }).catch(() => undefined);
      if (variant.driver === 'kubernetes') await deleteKubernetesNamespace(KUBECONFIG, K8S_NAMESPACE);
      await dropScratchDatabase(DATABASE_URL as string, database);
      for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
    });

    it('every create, exec and delete succeeds, and nothing is orphaned or lost', async () => {
      // Both at once: they migrate one fresh database and bootstrap one admin key concurrently.
      await Promise.all([start(0), start(1)]);
      const client = new CorralClient({ apiUrl: forwarder.url, apiKey: key, retry: { maxRetries: 4, baseDelayMs: 200, maxDelayMs: 2_000 } });
      const created: string[] = [];
      const failures: string[] = [];
      let execRetries = 0;
      let cyclesDone = 0;

      /**
       * An exec is not replayed by the SDK once sent; `echo` is safe to run again after a cut
       * connection. Up to 12 tries, 300 ms growing to 3 s apart (about 25 s in all): a kill cuts
       * what is in flight, and on a loaded host the restarted replica takes seconds to listen
       * again. A failure lists every try's error, with when it came.
       */
      async function execWithRetry(sandbox: Sandbox, command: string): Promise<string> {
        const tries: string[] = [];
        const started = Date.now();
        for (let attempt = 0; ; attempt++) {
          try {
            return (await sandbox.exec(command, { timeout: 30 })).stdout;
          } catch (error) {
            tries.push(`+${Date.now() - started} ms ${error instanceof Error ? error.message : String(error)}`);
            if (!(error instanceof ConnectionError) || attempt >= 11) {
              throw new Error(`exec failed after ${tries.length} tries:\n  ${tries.join('\n  ')}`, { cause: error });
            }
            execRetries++;
            await new Promise((resolve) => setTimeout(resolve, Math.min(3_000, 300 * 1.5 ** attempt)));
          }
        }
      }

      let killerDone = false;
      /** At least `cycles` cycles, and on until both replicas were killed and restarted. */
      async function worker(w: number): Promise<void> {
        for (let i = 0; i < variant.cycles || !killerDone; i++) {
          const step = `worker ${w} cycle ${i}`;
          let id: string | undefined;
          try {
            const sandbox = await Sandbox.create(client, { image: variant.image, name: `r-${w}-${i}`, cpuCores: 0.1, memoryGb: 0.125, diskSizeGb: 1, timeoutMinutes: 30 });
            id = sandbox.id;
            created.push(sandbox.id);
            await sandbox.waitUntilRunning({ timeoutMs: 180_000 });
            const out = await execWithRetry(sandbox, `echo ${w}-${i}`);
            assert.equal(out, `${w}-${i}\n`);
            await sandbox.delete();
            cyclesDone++;
          } catch (error) {
            // The row as the store has it, so a failure says how the sandbox ended and who held it.
            const row = id ? await observer.getSandbox(id).catch(() => undefined) : undefined;
            const state = row ? ` (row: ${JSON.stringify({ status: row.status, terminationReason: row.terminationReason, errorType: row.errorType, errorMessage: row.errorMessage, provisioner: row.provisioner })})` : '';
            failures.push(`${step}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}${state}`);
          }
        }
      }

      const observer = await openStore({ kind: 'postgres', url: databaseUrl });
      /** Starting sandboxes whose provisioning the replica holds when it is killed: another must adopt them. */
      const orphanedByKill: string[] = [];
      /** Killed replica id → when SIGKILL was sent. */
      const killed = new Map<string, number>();
      let adoptions = 0;
      /** From SIGKILL to the adopted sandbox RUNNING, ms. */
      const adoptionMs: number[] = [];
      const work = Promise.all(Array.from({ length: variant.workers }, (_, w) => worker(w)));
      // Each replica killed in turn while it provisions (as soon as it holds a starting sandbox, within
      // 30 s), then restarted: a new process with a new replica id.
      const killer = (async () => {
        for (const index of [0, 1]) {
          const deadline = Date.now() + 30_000;
          for (;;) {
            const starting = (await observer.findSandboxes({ activeOnly: true, runtimeOwner: deployment }, 1000)).filter(
              (r) => (r.status === 'PENDING' || r.status === 'PROVISIONING') && r.provisioner === replicaIds[index],
            );
            if (starting.length > 0 || Date.now() > deadline) {
              killed.set(replicaIds[index] as string, Date.now());
              await kill(index);
              orphanedByKill.push(...starting.map((r) => r.id));
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          await start(index);
        }
      })().finally(() => {
        killerDone = true;
      });
      try {
        await Promise.all([work, killer]);
      } finally {
        await observer.close();
      }

      assert.deepEqual(failures, [], `every call succeeds with the client's retries\n--- forwarder: cut or refused ---\n${forwarder.failures.join('\n')}\n--- replica 0 ---\n${logs[0]}\n--- replica 1 ---\n${logs[1]}`);
      assert.ok(cyclesDone >= variant.workers * variant.cycles);
      assert.equal(new Set(created).size, created.length, 'no create made two sandboxes');
      // (Which replica served what is in the summary line: the forwarder counts answered calls per port.)

      // Every sandbox the client made ended deleted, and the deployment's runtime empties (the
      // deletes removed their containers, or the reconciler removes what a killed replica left).
      const store = await openStore({ kind: 'postgres', url: databaseUrl });
      try {
        const rows = await store.getSandboxes(created);
        assert.equal(rows.length, created.length, 'every created sandbox has a row');
        for (const row of rows) assert.equal(row.status, 'TERMINATED', `${row.id} is ${row.status} (${row.errorType ?? ''} ${row.errorMessage ?? ''})`);
        // What the killed replicas were provisioning was adopted by another (the client saw it run).
        assert.ok(orphanedByKill.length > 0, 'a kill landed while a replica provisioned');
        for (const row of await store.getSandboxes(orphanedByKill)) {
          const killedAt = killed.get(row.provisioner ?? '');
          // Adopted by another replica, or started by the killed one in the moment before SIGKILL landed.
          const adopted = killedAt === undefined;
          if (adopted) {
            adoptions++;
            const killedAtAll = Math.max(...[...killed.values()].filter((at) => row.startedAt !== null && at <= Date.parse(row.startedAt)));
            if (row.startedAt !== null && Number.isFinite(killedAtAll)) adoptionMs.push(Date.parse(row.startedAt) - killedAtAll);
          }
          assert.ok(adopted || (row.startedAt !== null && Date.parse(row.startedAt) <= killedAt), `${row.id} was adopted (provisioner ${row.provisioner ?? 'null'}, started ${row.startedAt ?? 'never'})`);
        }
        const live = await store.findSandboxes({ activeOnly: true, runtimeOwner: deployment }, 1000);
        assert.deepEqual(live.map((r) => `${r.id} ${r.status}`), [], 'no sandbox is left starting or running');
      } finally {
        await store.close();
      }
      const deadline = Date.now() + 60_000;
      let left: string[] = [];
      do {
        left = await withRuntime(async (runtime) => (await runtime.list()).map((c) => c.sandboxId));
        if (left.length === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      } while (Date.now() < deadline);
      assert.deepEqual(left, [], 'the runtime holds nothing without a live row');
      process.stderr.write(`# ${variant.driver}: ${cyclesDone} cycles, ${created.length} sandboxes, exec retried after a cut connection ${execRetries}×, killed while provisioning ${orphanedByKill.length} (adopted ${adoptions}, RUNNING ${JSON.stringify(adoptionMs)} ms after the kill), forwarded ${JSON.stringify([...forwarder.forwarded])}, cut or refused: ${JSON.stringify(forwarder.failures)}\n`);
    });
  });
}
