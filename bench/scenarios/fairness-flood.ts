/**
 * Tenant A's flood for the fairness scenario, run as its own process so its client work does not
 * share an event loop with tenant B's timing. Reads FLOOD_CONFIG (JSON) from the environment and
 * floods until killed: long execs, large outputs and open streaming sessions, each in a loop.
 */
import { WebSocket } from 'ws';

interface FloodTarget {
  base: string;
  token: string;
}
interface FloodConfig {
  targets: FloodTarget[];
  longExecs: number;
  bigOutputs: number;
  sessions: number;
}

const config = JSON.parse(process.env.FLOOD_CONFIG ?? '{}') as FloodConfig;
let requests = 0;
let failures = 0;

async function exec(target: FloodTarget, command: string): Promise<void> {
  try {
    const res = await fetch(`${target.base}/exec`, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ command, timeout: 120 }),
    });
    // Read and drop the body without parsing it.
    if (res.body) for await (const _chunk of res.body) void _chunk;
    requests++;
    if (res.status !== 200) failures++;
  } catch {
    failures++;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function loop(i: number, command: string): void {
  const target = config.targets[i % config.targets.length] as FloodTarget;
  void (async () => {
    for (;;) await exec(target, command);
  })();
}

function session(i: number): void {
  const target = config.targets[i % config.targets.length] as FloodTarget;
  const open = (): void => {
    const ws = new WebSocket(`${target.base.replace(/^http/, 'ws')}/stream`, { headers: { authorization: `Bearer ${target.token}` } });
    ws.on('open', () => ws.send(JSON.stringify({ type: 'start', command: 'sleep 3600', stdin: true })));
    ws.on('error', () => undefined);
    ws.on('close', () => setTimeout(open, 200));
  };
  open();
}

for (let i = 0; i < config.longExecs; i++) loop(i, 'sleep 2');
for (let i = 0; i < config.bigOutputs; i++) loop(i, 'head -c 16777216 /dev/zero');
for (let i = 0; i < config.sessions; i++) session(i);
setInterval(() => process.send?.({ requests, failures }), 1000);
