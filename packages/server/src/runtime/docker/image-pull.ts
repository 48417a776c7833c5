import type Docker from 'dockerode';
import { RuntimeError } from '../runtime.js';
import type { SandboxSpec } from '../runtime.js';

/** One line of Docker's pull progress stream. */
interface PullProgress {
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
}

/**
 * Pulls `image`, with credentials when given. Every failure (unknown image, refused credentials,
 * unreachable registry) becomes `RuntimeError('IMAGE_PULL_FAILED')` carrying the registry's reason.
 */
export async function pullImage(docker: Docker, image: string, auth: SandboxSpec['registryAuth']): Promise<void> {
  const authconfig = auth ? { username: auth.username, password: auth.password, serveraddress: auth.serverAddress } : undefined;
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.pull(image, authconfig ? { authconfig } : {});
  } catch (error) {
    throw new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${reason(error)}`, { cause: error });
  }
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: PullProgress[]) => {
        if (error) {
          reject(new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${reason(error)}`, { cause: error }));
          return;
        }
        const failed = output.find((line) => line.error ?? line.errorDetail?.message);
        if (failed) {
          reject(new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${failed.errorDetail?.message ?? failed.error}`));
          return;
        }
        resolve();
      },
    );
  });
}

function reason(error: unknown): string {
  if (error instanceof Error) {
    const json = (error as { json?: { message?: string } }).json;
    return json?.message ?? error.message;
  }
  return String(error);
}
