import { addServeSettingsHelp } from './commands/serve.js';
import { buildProgram } from './index.js';

const program = buildProgram();
await addServeSettingsHelp(program, process.argv.slice(2));
await program.parseAsync(process.argv);
