import type { FastifyInstance } from 'fastify';
import type { AppServices } from '../http/app.js';

/** Registers the data-plane gateway under `/gateway/:user_ns/:job_id/…`. */
export async function registerGateway(_app: FastifyInstance, _services: AppServices): Promise<void> {
  // The gateway routes are registered here.
}
