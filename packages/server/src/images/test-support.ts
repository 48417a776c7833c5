import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import Docker from 'dockerode';
import { findTool, TOOLS } from './tools.js';

/** Why the components a test needs are absent, or undefined when they are all there. */
export async function missingComponents(tools: readonly string[], needsDocker: boolean): Promise<string | undefined> {
  const missing = tools.filter((tool) => findTool(tool) === undefined);
  const reasons = missing.map((tool) => `${tool} (Debian ${TOOLS[tool]?.debianPackage ?? tool}; bash scripts/build-images.sh installs it)`);
  if (needsDocker) {
    try {
      await Promise.race([
        new Docker().ping(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no answer within 3 s')), 3000).unref()),
      ]);
    } catch (error) {
      reasons.push(`a Docker engine (${(error as Error).message}; bash scripts/ensure-docker.sh starts one)`);
    }
  }
  return reasons.length > 0 ? `missing ${reasons.join(', ')}` : undefined;
}

/** Fails the test under CI=true, skips it otherwise; returns true when the test must stop. */
export function absent(t: TestContext, reason: string | undefined): boolean {
  if (reason === undefined) return false;
  if (process.env['CI'] === 'true') assert.fail(`required under CI=true: ${reason}`);
  t.skip(reason);
  return true;
}

/**
 * All output of a finished TTY container. Read as a stream: without `follow`, docker-modem
 * JSON-parses the body, so an output of `42` would come back as a number.
 */
export async function containerOutput(container: Docker.Container): Promise<string> {
  const stream = await container.logs({ stdout: true, stderr: true, follow: true });
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8').replace(/\r\n/g, '\n');
}

/** Runs `cmd` in a new container of `image` (no network) and returns its exit code and output. */
export async function runInImage(docker: Docker, image: string, cmd: readonly string[]): Promise<{ code: number; output: string }> {
  const container = await docker.createContainer({ Image: image, Cmd: [...cmd], Tty: true, HostConfig: { NetworkMode: 'none' } });
  try {
    await container.start();
    const result = (await container.wait()) as { StatusCode: number };
    return { code: result.StatusCode, output: await containerOutput(container) };
  } finally {
    await container.remove({ force: true });
  }
}

/** Removes images by reference, ignoring those already gone. */
export async function removeImages(docker: Docker, refs: readonly string[]): Promise<void> {
  for (const ref of refs) {
    try {
      await docker.getImage(ref).remove({ force: true });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 404) throw error;
    }
  }
}

/** A reference unique to this test process. */
export function testRef(name: string): string {
  return `corral-images-test/${name}:${process.pid}-${Date.now().toString(36)}`;
}
