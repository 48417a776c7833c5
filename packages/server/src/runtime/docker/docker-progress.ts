/** One message of a Docker engine JSON progress stream (pull, push, import, load). */
export interface ProgressMessage {
  readonly status?: string;
  readonly stream?: string;
  readonly id?: string;
  readonly error?: string;
  readonly errorDetail?: { readonly message?: string };
}

/** Raised when a Docker progress stream reports an error. */
export class DockerProgressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DockerProgressError';
  }
}

function parse(line: string): ProgressMessage | undefined {
  const trimmed = line.trim();
  if (trimmed === '') return undefined;
  try {
    const value: unknown = JSON.parse(trimmed);
    return typeof value === 'object' && value !== null ? (value as ProgressMessage) : undefined;
  } catch {
    return { stream: trimmed };
  }
}

/**
 * Reads a Docker engine JSON-lines progress stream to its end. Resolves with every message;
 * rejects with {@link DockerProgressError} on the first message that carries an error.
 */
export async function readProgress(stream: NodeJS.ReadableStream, onMessage?: (message: ProgressMessage) => void): Promise<ProgressMessage[]> {
  const messages: ProgressMessage[] = [];
  let buffered = '';
  let failure: string | undefined;
  const take = (line: string): void => {
    const message = parse(line);
    if (message === undefined) return;
    messages.push(message);
    onMessage?.(message);
    if (failure === undefined && (message.error !== undefined || message.errorDetail?.message !== undefined)) {
      failure = message.error ?? message.errorDetail?.message;
    }
  };
  for await (const chunk of stream) {
    buffered += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      take(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf('\n');
    }
  }
  take(buffered);
  if (failure !== undefined) throw new DockerProgressError(failure);
  return messages;
}
