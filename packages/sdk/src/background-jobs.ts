import { randomUUID } from 'node:crypto';
import { NotFoundError, ValidationError } from './errors.js';
import { type GatewayClient, shellQuote } from './gateway-client.js';

/** A job started with {@link startBackgroundJob}: where its output and exit code land. */
export interface BackgroundJob {
  jobId: string;
  sandboxId: string;
  stdoutLogFile: string;
  stderrLogFile: string;
  exitFile: string;
}

/** The state of a background job. `exitCode`, `stdout`, `stderr` are set once it completed. */
export interface BackgroundJobStatus {
  jobId: string;
  completed: boolean;
  exitCode: number | null;
  stdout: string | null;
  stderr: string | null;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

const TAIL_BYTES = 10 * 1024 * 1024;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Starts `command` detached (Prime SDK protocol §3.8): `nohup sh -c '(…) > out 2> err; echo $? > exit'`
 * through one exec (timeout 30 s). Output goes to `/tmp/job_<id>.{stdout.log,stderr.log,exit}`.
 */
export async function startBackgroundJob(
  gateway: GatewayClient,
  sandboxId: string,
  command: string,
  options: { cwd?: string; env?: Record<string, string>; user?: string } = {},
): Promise<BackgroundJob> {
  const jobId = randomUUID().replace(/-/g, '').slice(0, 8);
  const job: BackgroundJob = {
    jobId,
    sandboxId,
    stdoutLogFile: `/tmp/job_${jobId}.stdout.log`,
    stderrLogFile: `/tmp/job_${jobId}.stderr.log`,
    exitFile: `/tmp/job_${jobId}.exit`,
  };
  const parts: string[] = [];
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (!ENV_NAME.test(name)) throw new ValidationError(`Invalid environment variable name ${JSON.stringify(name)}`, [{ param: `env.${name}`, details: 'must match ^[A-Za-z_][A-Za-z0-9_]*$' }]);
    parts.push(`export ${name}=${shellQuote(value)}; `);
  }
  const body = `${parts.join('')}${options.cwd ? `cd ${shellQuote(options.cwd)} && ` : ''}${command}`;
  const shCommand = `(${body}) > ${job.stdoutLogFile} 2> ${job.stderrLogFile}; echo $? > ${job.exitFile}`;
  await gateway.exec(sandboxId, `nohup sh -c ${shellQuote(shCommand)} < /dev/null > /dev/null 2>&1 &`, {
    timeout: 30,
    ...(options.user !== undefined ? { user: options.user } : {}),
  });
  return job;
}

/** Reads a job's exit file; once it holds a number, tails (last 10 MiB) its stdout and stderr. */
export async function getBackgroundJob(gateway: GatewayClient, job: BackgroundJob): Promise<BackgroundJobStatus> {
  const pending: BackgroundJobStatus = { jobId: job.jobId, completed: false, exitCode: null, stdout: null, stderr: null, stdoutTruncated: false, stderrTruncated: false };
  let exitText: string;
  try {
    exitText = (await gateway.readFile(job.sandboxId, job.exitFile)).content.trim();
  } catch (error) {
    if (error instanceof NotFoundError) return pending;
    throw error;
  }
  if (!/^-?\d+$/.test(exitText)) return pending;
  const tail = async (path: string): Promise<{ text: string; truncated: boolean }> => {
    try {
      const r = await gateway.readFile(job.sandboxId, path, { offset: -TAIL_BYTES, length: TAIL_BYTES });
      return { text: r.content, truncated: r.truncated ?? false };
    } catch (error) {
      if (error instanceof NotFoundError) return { text: '', truncated: false };
      throw error;
    }
  };
  const [out, err] = await Promise.all([tail(job.stdoutLogFile), tail(job.stderrLogFile)]);
  return { jobId: job.jobId, completed: true, exitCode: Number(exitText), stdout: out.text, stderr: err.text, stdoutTruncated: out.truncated, stderrTruncated: err.truncated };
}
