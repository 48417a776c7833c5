/** `3m`, `2h`, `5d`: how long ago an ISO time was. */
export function age(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86_400)}d`;
}

/** `12.3 MiB`. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Progress on stderr: a live line on a terminal, a final line otherwise. */
export function progressReporter(label: string): { update(done: number, total: number | undefined): void; finish(done: number): void } {
  const live = process.stderr.isTTY === true;
  let last = 0;
  return {
    update(done, total) {
      if (!live || Date.now() - last < 100) return;
      last = Date.now();
      const pct = total ? ` (${Math.floor((done / total) * 100)}%)` : '';
      process.stderr.write(`\r${label}: ${bytes(done)}${total ? ` of ${bytes(total)}` : ''}${pct}\x1b[K`);
    },
    finish(done) {
      process.stderr.write(`${live ? '\r' : ''}${label}: ${bytes(done)} done\x1b[K\n`.replace(live ? '' : '\x1b[K', ''));
    },
  };
}
