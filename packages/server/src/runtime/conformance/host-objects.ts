import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Mount points in this process's mount namespace (from /proc/self/mountinfo). */
export function mountPoints(): Set<string> {
  const points = new Set<string>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point) points.add(point.replace(/\\040/g, ' '));
  }
  return points;
}

/** Backing files of the host's attached loop devices (a deleted file keeps its path, with " (deleted)"). */
export function loopBackingFiles(): string[] {
  const files: string[] = [];
  for (const device of readdirSync('/sys/block').filter((d) => d.startsWith('loop'))) {
    try {
      files.push(readFileSync(join('/sys/block', device, 'loop', 'backing_file'), 'utf8').trim());
    } catch {
      // Not attached.
    }
  }
  return files;
}

/** Names of `checks` whose object still exists. */
export function present(checks: Record<string, () => boolean>): string[] {
  return Object.entries(checks)
    .filter(([, exists]) => exists())
    .map(([name]) => name);
}

/**
 * Puts an immutable file (`chattr +i`) in `dir`, which the driver must delete while removing a
 * sandbox: the removal then fails with EPERM at that point. The returned function lifts the flag.
 */
export function immutableObstacle(dir: string): () => Promise<void> {
  const file = join(dir, 'corral-test-obstacle');
  writeFileSync(file, 'in the way\n');
  execFileSync('chattr', ['+i', file]);
  return async () => {
    if (existsSync(file)) execFileSync('chattr', ['-i', file]);
  };
}
