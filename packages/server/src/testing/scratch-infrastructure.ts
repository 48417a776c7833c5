import type { CoreV1Api } from '@kubernetes/client-node';
import type { Client } from 'pg';

// pg and the Kubernetes client load only when a test calls these (every test imports the testing index).
async function pgClient(url: string): Promise<Client> {
  const { default: pg } = await import('pg');
  return new pg.Client({ connectionString: url });
}

async function kubernetesCore(kubeconfig: string): Promise<CoreV1Api> {
  const k8s = await import('@kubernetes/client-node');
  const config = new k8s.KubeConfig();
  config.loadFromFile(kubeconfig);
  return config.makeApiClient(k8s.CoreV1Api);
}

/**
 * Creates database `name` on the PostgreSQL server of `baseUrl` and returns its URL (a fresh,
 * empty database per test). Drop it with {@link dropScratchDatabase}.
 */
export async function createScratchDatabase(baseUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  const admin = await pgClient(baseUrl);
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops database `name` (closing its connections) on the server of `baseUrl`. */
export async function dropScratchDatabase(baseUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
  const admin = await pgClient(baseUrl);
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

/**
 * Deletes a namespace a test created (and everything in it) and waits, up to `timeoutMs`, until it
 * is gone: a namespace still terminating refuses new Pods, so a next run must not find it. A
 * missing one is fine.
 */
export async function deleteKubernetesNamespace(kubeconfig: string, namespace: string, timeoutMs = 120_000): Promise<void> {
  const core = await kubernetesCore(kubeconfig);
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const gone = await core.readNamespace({ name: namespace }).then(
      () => false,
      () => true,
    );
    if (gone) return;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}
