import type { Command } from 'commander';
import { collect } from '../option-parsers.js';
import { lazy } from '../run.js';

/**
 * `corral sandbox create|list|get|delete|exec|logs|upload|download|expose|unexpose|ports|ssh|network|egress-log|events|stats|pause|resume|checkpoint|checkpoints|fork`:
 * names, options and help here; each verb's implementation is its own module under `sandbox/`, imported
 * (with the SDK) only when that verb runs.
 */
export function registerSandbox(program: Command): void {
  const sandbox = program.command('sandbox').alias('sb').description('Create, use and delete sandboxes');
  sandbox
    .command('create <image> [startCommand...]')
    .description('Create a sandbox and print its id (the start command defaults to `tail -f /dev/null`)')
    .option('--name <name>', 'name (default: <image>-<4 hex>)')
    .option('--start-command <cmd>', 'shell command that keeps the sandbox alive (or give it after --)')
    .option('--cpu-cores <n>', 'CPU cores (server default 1)')
    .option('--memory-gb <n>', 'memory in GB (server default 2)')
    .option('--disk-size-gb <n>', 'disk in GB (server default 10)')
    .option('--timeout-minutes <n>', 'lifetime from RUNNING, minutes (default 60; -1 = none)')
    .option('--idle-timeout-minutes <n>', 'end the sandbox after this long without commands or file transfers')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect)
    .option('--secret <K=V>', 'secret environment variable, masked when read back (repeatable)', collect)
    .option('-l, --label <label>', 'label (repeatable)', collect)
    .option('--team-id <id>', 'create it in a team')
    .option('--allow <entry>', 'egress only to this domain (*.leftmost wildcard), IP or CIDR (repeatable)', collect)
    .option('--deny <entry>', 'egress to everything but this domain, IP or CIDR (repeatable)', collect)
    .option('--no-network', 'no network at all (only loopback)')
    .option('--wait', 'wait until it is RUNNING and answers commands (the server answers most creates RUNNING already)')
    .action(lazy(async () => (await import('./sandbox/create.js')).createSandbox));

  sandbox
    .command('list')
    .alias('ls')
    .description('List your sandboxes (active ones unless --all or --status)')
    .option('-l, --label <label>', 'only sandboxes with this label (repeatable; all must match)', collect)
    .option('--status <status>', 'only this status (PENDING, RUNNING, TERMINATED, …)')
    .option('-a, --all', 'include ended sandboxes')
    .option('-p, --page <n>', 'page', '1')
    .option('-n, --num <n>', 'per page (≤ 1000)', '50')
    .action(lazy(async () => (await import('./sandbox/list.js')).listSandboxes));

  sandbox
    .command('get <id>')
    .description('Show one sandbox')
    .action(lazy(async () => (await import('./sandbox/get.js')).getSandbox));

  sandbox
    .command('delete [ids...]')
    .alias('rm')
    .description('Delete sandboxes by id (space or comma separated), by label, or all of yours')
    .option('-l, --label <label>', 'delete every sandbox with this label (repeatable; all must match)', collect)
    .option('-a, --all', 'delete all your active sandboxes')
    .action(lazy(async () => (await import('./sandbox/delete.js')).deleteSandboxes));

  sandbox
    .command('exec <id> [command...]')
    .alias('run')
    .description('Run a command in a sandbox and exit with its exit code (put the command after --)')
    .option('-i, --interactive', 'stream: forward stdin, print output as it comes')
    .option('-t, --tty', 'allocate a terminal (with -i: raw mode, resizes follow the window)')
    .option('-w, --workdir <dir>', 'working directory')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect)
    .option('-u, --user <user>', 'run as this user (name, uid or uid:gid)')
    .option('--timeout <seconds>', 'kill the command after this many seconds (default 300 without -i, none with -i)')
    .action(lazy(async () => (await import('./sandbox/exec.js')).execInSandbox));

  sandbox
    .command('logs <id>')
    .description("Print the start command's output")
    .action(lazy(async () => (await import('./sandbox/logs.js')).printLogs));

  sandbox
    .command('upload <id> <local> <remote>')
    .description('Copy a local file into a sandbox, streamed (parent directories are created; "-" reads stdin)')
    .action(lazy(async () => (await import('./sandbox/upload.js')).uploadFile));

  sandbox
    .command('download <id> <remote> [local]')
    .description('Copy a file out of a sandbox, streamed (LOCAL defaults to its name here; "-" writes stdout)')
    .action(lazy(async () => (await import('./sandbox/download.js')).downloadFile));

  sandbox
    .command('expose <id> <port>')
    .description('Expose a sandbox port: prints its URL (HTTP) or host:port (TCP); -o json prints the whole answer')
    .option('--name <name>', 'a name for the exposure')
    .option('-p, --protocol <protocol>', 'HTTP or TCP', 'HTTP')
    .action(lazy(async () => (await import('./sandbox/expose.js')).exposePort));

  sandbox
    .command('unexpose <id> <exposureId>')
    .description('Remove an exposed port (see `corral sandbox ports ID` for exposure ids)')
    .action(lazy(async () => (await import('./sandbox/unexpose.js')).unexposePort));

  sandbox
    .command('ports [id]')
    .alias('list-ports')
    .description("List exposed ports: one sandbox's, or those of all your active sandboxes")
    .action(lazy(async () => (await import('./sandbox/ports.js')).listPorts));

  sandbox
    .command('ssh <id> [sshArgs...]')
    .description('Open an SSH session into a sandbox (no sshd needed in the image); arguments after -- go to ssh, e.g. a remote command')
    .option('--ttl <seconds>', 'session lifetime, 60..3600', '900')
    .action(lazy(async () => (await import('./sandbox/ssh.js')).sshIntoSandbox));

  sandbox
    .command('network <id>')
    .description("Show a sandbox's egress policy, or replace it (a running sandbox follows within a second)")
    .option('--allow <entry>', 'only this domain (*.leftmost wildcard), IP or CIDR is reachable (repeatable)', collect)
    .option('--deny <entry>', 'everything but this domain, IP or CIDR is reachable (repeatable)', collect)
    .option('--open', 'open egress (no list)')
    .option('--none', 'no egress at all (an empty allow list)')
    .action(lazy(async () => (await import('./sandbox/network.js')).showOrSetNetwork));

  sandbox
    .command('egress-log <id>')
    .description("Show a sandbox's recent DNS answers and connection attempts, with their verdicts")
    .option('--limit <n>', 'at most this many entries, the newest (1..1000, default 100)')
    .action(lazy(async () => (await import('./sandbox/egress-log.js')).printEgressLog));

  sandbox
    .command('events <id>')
    .description("Show a sandbox's timeline: status changes with reasons, execs, transfers, exposures, SSH sessions, policy changes")
    .option('--limit <n>', 'at most this many events (1..1000, default 100)')
    .option('--after <eventId>', 'only events after this one')
    .option('-f, --follow', 'print events as they happen, until the sandbox has ended')
    .action(lazy(async () => (await import('./sandbox/events.js')).printEvents));

  sandbox
    .command('stats <id>')
    .description("Show a running sandbox's CPU, memory, pids, disk and network usage")
    .action(lazy(async () => (await import('./sandbox/stats.js')).printStats));

  sandbox
    .command('pause <id>')
    .description('Freeze every process of a running sandbox (memory kept; its timeout and idle timers stop)')
    .action(lazy(async () => (await import('./sandbox/pause.js')).pauseSandbox));

  sandbox
    .command('resume <id>')
    .description('Continue a paused sandbox where it stopped (its timers with the time they had left)')
    .action(lazy(async () => (await import('./sandbox/resume.js')).resumeSandbox));

  sandbox
    .command('checkpoint <id>')
    .description("Checkpoint a running or paused sandbox's filesystem (print the checkpoint's id and state)")
    .option('--memory', 'capture its running processes and their memory too (drivers with memory checkpoints)')
    .option('--wait', 'wait until the checkpoint is stored (DURABLE); fail if it fails')
    .option('--timeout <seconds>', 'with --wait: give up after this long (default 300)')
    .action(lazy(async () => (await import('./sandbox/checkpoint.js')).checkpointSandbox));

  sandbox
    .command('checkpoints <id>')
    .description("List a sandbox's checkpoints, newest first")
    .action(lazy(async () => (await import('./sandbox/checkpoints.js')).listCheckpoints));

  sandbox
    .command('fork [id]')
    .description('Branch a sandbox (checkpoint it, then start --count sandboxes from that), or start --count sandboxes from --checkpoint; prints their ids')
    .requiredOption('--count <n>', 'how many sandboxes (1..64)')
    .option('--checkpoint <checkpointId>', 'fork this DURABLE checkpoint instead of a sandbox')
    .option('--memory', 'when forking a sandbox: capture its processes and memory too')
    .option('--name <name>', 'with --checkpoint: the forks\' name (default fork)')
    .option('-l, --label <label>', 'with --checkpoint: label the forks (repeatable)', collect)
    .action(lazy(async () => (await import('./sandbox/fork.js')).forkSandbox));
}
