/**
 * Runs `corral` from source with the tunnel commands registered even where `buildProgram()` does
 * not register them yet; the tunnel tests spawn this as a user's shell would spawn `corral`.
 */
import { buildProgram } from '../../index.js';
import { registerTunnel } from './index.js';

const program = buildProgram();
if (!program.commands.some((c) => c.name() === 'tunnel')) registerTunnel(program);
await program.parseAsync(process.argv);
