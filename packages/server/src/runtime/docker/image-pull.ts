import type Docker from 'dockerode';
import { parseImageRef } from '../registry/image-ref.js';
import type { ImageRef } from '../registry/image-ref.js';
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
 * unreachable registry) becomes `RuntimeError('IMAGE_PULL_FAILED')` with a short reason: the
 * engine's message is classified, never passed on (it can quote a registry's response body).
 * The full message stays on the error's `cause` for the server's log.
 */
export async function pullImage(docker: Docker, image: string, auth: SandboxSpec['registryAuth']): Promise<void> {
  const authconfig = auth ? { username: auth.username, password: auth.password, serveraddress: auth.serverAddress } : undefined;
  let stream: NodeJS.ReadableStream;
  try {
    stream = await docker.pull(image, authconfig ? { authconfig } : {});
  } catch (error) {
    throw new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${shortPullReason(reason(error))}`, { cause: error });
  }
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(
      stream,
      (error: Error | null, output: PullProgress[]) => {
        if (error) {
          reject(new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${shortPullReason(reason(error))}`, { cause: error }));
          return;
        }
        const failed = output.find((line) => line.error ?? line.errorDetail?.message);
        if (failed) {
          const text = failed.errorDetail?.message ?? failed.error ?? '';
          reject(new RuntimeError('IMAGE_PULL_FAILED', `pulling ${image} failed: ${shortPullReason(text)}`, { cause: new Error(text) }));
          return;
        }
        resolve();
      },
    );
  });
}

/** A short, fixed reason for an engine pull error (whose text may quote a registry's response body). */
export function shortPullReason(text: string): string {
  const t = text.toLowerCase();
  if (/unauthorized|authentication required|no basic auth credentials|denied|forbidden|incorrect username or password/.test(t)) {
    return 'the registry refused access (the image may not exist or may need other credentials)';
  }
  if (/manifest unknown|not found|does not exist|no such image/.test(t)) return 'the image was not found in the registry';
  if (/no matching manifest|platform/.test(t)) return 'the image has no variant for this platform';
  if (/toomanyrequests|too many requests|rate limit/.test(t)) return 'the registry is rate limiting pulls';
  if (/timeout|timed out|deadline exceeded/.test(t)) return 'the registry did not answer in time';
  if (/no such host|connection refused|dial tcp|network is unreachable|lookup |tls|x509|certificate/.test(t)) return 'the registry could not be reached';
  if (/invalid reference|invalid repository|invalid tag/.test(t)) return 'invalid image reference';
  if (/no space left/.test(t)) return 'the host is out of disk space';
  return 'the engine could not pull the image';
}

function reason(error: unknown): string {
  if (error instanceof Error) {
    const json = (error as { json?: { message?: string } }).json;
    return json?.message ?? error.message;
  }
  return String(error);
}

/**
 * The registry reference whose access guards a local image, or undefined for an image that did
 * not come from a registry under this name (built, loaded, or tagged locally by the operator).
 */
export function registrySource(info: Docker.ImageInspectInfo, named: ImageRef): ImageRef | undefined {
  const digests: ImageRef[] = [];
  for (const text of info.RepoDigests ?? []) {
    try {
      digests.push(parseImageRef(text));
    } catch {
      // Not a reference this client can check: ignored.
    }
  }
  if (digests.length === 0) return undefined;
  if (digests.some((d) => d.registry === named.registry && d.repository === named.repository)) return named;
  const byTag = (info.RepoTags ?? []).some((tag) => {
    try {
      return parseImageRef(tag).canonical === named.canonical;
    } catch {
      return false;
    }
  });
  return byTag ? undefined : digests[0];
}

