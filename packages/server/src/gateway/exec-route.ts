import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { parseExecBody } from './exec-request.js';
import { type GatewayContext, type GatewayParams, actorOf, clientGone, runtimeFailure, targetOf } from './gateway-context.js';
import { maskSecrets, truncateText } from '../services/sandbox-events.js';
import { GatewayError } from '../errors/gateway-error.js';
import { type CommandOutcome, runCommand } from './run-command.js';
import { watchTransferIdle } from './transfer-idle.js';

/** `{"stdout": …, "stderr": …, "exit_code": N}` as JSON text, in slices. */
/** Output up to this size is answered as one string with a Content-Length; larger is streamed. */
const SMALL_ANSWER_BYTES = 64 * 1024;

function* execAnswer(outcome: CommandOutcome): Generator<string> {
  yield '{"stdout":"';
  yield* outcome.stdout.jsonSlices();
  yield '","stderr":"';
  yield* outcome.stderr.jsonSlices();
  yield `","exit_code":${outcome.exitCode}}`;
}

/**
 * `POST …/exec {command, working_dir, env, timeout, user}`: runs `/bin/sh -c command` and answers
 * 200 `{stdout, stderr, exit_code}` for any command that finished, 408 when it ran out of time
 * (its whole process tree is killed first).
 */
export function registerExecRoute(app: FastifyInstance, ctx: GatewayContext): void {
  app.post<{ Params: GatewayParams }>(
    '/:user_ns/:job_id/exec',
    { config: { public: true }, bodyLimit: ctx.config.execMaxRequestBytes },
    async (request, reply) => {
      const target = targetOf(request);
      const body = parseExecBody(request.body, ctx.config.maxExecTimeoutSeconds);
      const signal = clientGone(request, reply);
      const done = ctx.access.keepActive(target.sandboxId);
      let dispose: (() => void) | undefined;
      let startedAt: number | undefined;
      /** The exec as an event: the command cut to 1 KiB with the request's env values masked; env names only. */
      const recordExec = (result: Record<string, unknown>): void =>
        ctx.events.record(
          target.sandboxId,
          'exec',
          {
            command: truncateText(maskSecrets(body.command, Object.values(body.env))),
            envNames: Object.keys(body.env),
            ...(body.workingDir !== undefined ? { workingDir: body.workingDir } : {}),
            ...(body.user !== undefined ? { user: body.user } : {}),
            durationMs: Math.round(performance.now() - (startedAt ?? performance.now())),
            ...result,
          },
          actorOf(target),
        );
      try {
        const outcome = await ctx.slots.run(
          target,
          () => {
            startedAt = performance.now();
            return runCommand(
              target.runtime,
              target.runtimeId,
              { argv: ['/bin/sh', '-c', body.command], env: body.env, cwd: body.workingDir, user: body.user },
              { timeoutMs: body.timeoutSeconds * 1000, maxOutputBytes: ctx.config.execOutputMaxBytes, signal, budget: ctx.outputBudget.forUser(target.userId) },
            );
          },
          signal,
        );
        dispose = outcome.dispose;
        const seconds = (performance.now() - (startedAt ?? 0)) / 1000;
        ctx.metrics.execSeconds.observe({ outcome: outcome.timedOut ? 'timeout' : outcome.aborted ? 'aborted' : 'exited' }, seconds);
        ctx.metrics.execOutputBytes.observe(outcome.stdout.keptBytes + outcome.stderr.keptBytes);
        recordExec({
          exitCode: outcome.timedOut || outcome.aborted ? null : outcome.exitCode,
          timedOut: outcome.timedOut,
          aborted: outcome.aborted,
          outputBytes: outcome.stdout.keptBytes + outcome.stderr.keptBytes,
        });
        if (outcome.timedOut) {
          throw new GatewayError('command_timeout', `Command timed out after ${body.timeoutSeconds} seconds; its processes were killed`, {
            stdout: outcome.stdout.text(),
            stderr: outcome.stderr.text(),
          });
        }
        // A small answer goes out whole, with a Content-Length, in one write.
        if (outcome.stdout.keptBytes + outcome.stderr.keptBytes <= SMALL_ANSWER_BYTES) {
          return reply.type('application/json; charset=utf-8').send([...execAnswer(outcome)].join(''));
        }
        // A large one is serialized a slice at a time as the client takes it: it never blocks the
        // event loop (other tenants' requests) for long, nor exists twice as one big string.
        const answer = Readable.from(execAnswer(outcome), { highWaterMark: 1 });
        dispose = undefined;
        // A client that stops reading its answer is cut like an idle transfer, freeing its output.
        const unwatch = watchTransferIdle(request.raw.socket, ctx.config.transferIdleTimeoutSeconds * 1000, () => request.raw.socket?.destroy());
        const release = outcome.dispose;
        answer.once('close', () => {
          unwatch();
          release();
        });
        return reply.type('application/json; charset=utf-8').send(answer);
      } catch (error) {
        if (startedAt !== undefined && !(error instanceof GatewayError)) {
          ctx.metrics.execSeconds.observe({ outcome: 'error' }, (performance.now() - startedAt) / 1000);
          recordExec({ exitCode: null, failed: true });
        }
        if (signal.aborted) return reply; // Nobody is listening any more.
        throw runtimeFailure(target, error);
      } finally {
        dispose?.();
        done();
      }
    },
  );
}
