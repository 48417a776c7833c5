import { addServeSettingsHelp } from './commands/serve.js';
import { buildProgram } from './index.js';

/** Resolves once everything written to `stream` so far has been handed to the OS. */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

const program = buildProgram();
await addServeSettingsHelp(program, process.argv.slice(2));
await program.parseAsync(process.argv);
// The command is done: every action resolves when its work is over (`serve`'s never does; it ends
// the process from its signal handlers). Exit now rather than when Node notices nothing is left:
// after a `fetch`, fetch's idle keep-alive connection and timers keep the process up to a second longer.
await flushed(process.stdout);
await flushed(process.stderr);
process.exit();
