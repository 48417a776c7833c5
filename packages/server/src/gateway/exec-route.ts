import type { FastifyInstance } from 'fastify';
import { parseExecBody } from './exec-request.js';
import { type GatewayContext, type GatewayParams, clientGone, keepActive, runtimeFailure, targetOf } from './gateway-context.js';
import { GatewayError } from './gateway-error.js';
import { runCommand } from './run-command.js';

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
      const done = keepActive(ctx.services, target.sandboxId);
      let dispose: (() => void) | undefined;
      try {
        const outcome = await ctx.slots.run(
          target,
          () =>
            runCommand(
              target.runtime,
              target.runtimeId,
              { argv: ['/bin/sh', '-c', body.command], env: body.env, cwd: body.workingDir, user: body.user },
              { timeoutMs: body.timeoutSeconds * 1000, maxOutputBytes: ctx.config.execOutputMaxBytes, signal, budget: ctx.outputBudget },
            ),
          signal,
        );
        dispose = outcome.dispose;
        if (outcome.timedOut) {
          throw new GatewayError(408, 'command_timeout', `Command timed out after ${body.timeoutSeconds} seconds; its processes were killed`, {
            stdout: outcome.stdout,
            stderr: outcome.stderr,
          });
        }
        return reply.send({ stdout: outcome.stdout, stderr: outcome.stderr, exit_code: outcome.exitCode });
      } catch (error) {
        if (signal.aborted) return reply; // Nobody is listening any more.
        throw runtimeFailure(target, error);
      } finally {
        dispose?.();
        done();
      }
    },
  );
}
