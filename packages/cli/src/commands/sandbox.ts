import type { Command } from 'commander';
import { registerCreate } from './sandbox/create.js';
import { registerDelete } from './sandbox/delete.js';
import { registerDownload } from './sandbox/download.js';
import { registerEgressLog } from './sandbox/egress-log.js';
import { registerExec } from './sandbox/exec.js';
import { registerExpose } from './sandbox/expose.js';
import { registerGet } from './sandbox/get.js';
import { registerList } from './sandbox/list.js';
import { registerLogs } from './sandbox/logs.js';
import { registerNetwork } from './sandbox/network.js';
import { registerPorts } from './sandbox/ports.js';
import { registerSsh } from './sandbox/ssh.js';
import { registerUnexpose } from './sandbox/unexpose.js';
import { registerUpload } from './sandbox/upload.js';

/** `corral sandbox create|list|get|delete|exec|logs|upload|download|expose|unexpose|ports|ssh|network|egress-log`, each verb in its own module. */
export function registerSandbox(program: Command): void {
  const sandbox = program.command('sandbox').alias('sb').description('Create, use and delete sandboxes');
  registerCreate(sandbox);
  registerList(sandbox);
  registerGet(sandbox);
  registerDelete(sandbox);
  registerExec(sandbox);
  registerLogs(sandbox);
  registerUpload(sandbox);
  registerDownload(sandbox);
  registerExpose(sandbox);
  registerUnexpose(sandbox);
  registerPorts(sandbox);
  registerSsh(sandbox);
  registerNetwork(sandbox);
  registerEgressLog(sandbox);
}
