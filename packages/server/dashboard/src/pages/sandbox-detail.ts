import { type Sandbox, ApiCallError, api, followNdjson } from '../api.js';
import { type Child, ago, bytes, h, replace, statusBadge } from '../dom.js';
import type { Cleanup, PageContext } from '../main.js';
import { sparkline } from './sparkline.js';

const TABS = ['overview', 'terminal', 'logs', 'events', 'stats', 'exposures'] as const;
type Tab = (typeof TABS)[number];
const TAB_LABELS: Record<Tab, string> = { overview: 'Overview', terminal: 'Terminal', logs: 'Logs', events: 'Events', stats: 'Stats', exposures: 'Exposures' };
const ENDED = ['ERROR', 'TERMINATED', 'TIMEOUT'];

interface SandboxEvent {
  id: string;
  at: string;
  type: string;
  actor: { userId: string; keyId: string | null } | null;
  data: Record<string, unknown>;
}

interface Stats {
  at: string;
  cpu: { usageSeconds: number; limitCores: number };
  memory: { usedBytes: number; limitBytes: number };
  pids: number;
  disk: { usedBytes: number | null; limitBytes: number };
  network: { rxBytes: number; txBytes: number } | null;
}

interface Exposure {
  exposure_id: string;
  port: number;
  name: string | null;
  protocol: string | null;
  url: string;
  external_endpoint: string | null;
  created_at: string | null;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function details(s: Sandbox): HTMLElement {
  const row = (label: string, value: Child): HTMLElement[] => [h('dt', {}, label), h('dd', {}, value)];
  return h(
    'dl',
    { class: 'details', id: 'sandbox-details' },
    ...row('ID', h('span', { class: 'mono' }, s.id)),
    ...row('Status', statusBadge(s.status)),
    ...row('Image', h('span', { class: 'mono' }, s.dockerImage)),
    ...row('Start command', s.startCommand ? h('span', { class: 'mono' }, s.startCommand) : '–'),
    ...row('Resources', `${s.cpuCores} CPU · ${s.memoryGB} GB memory · ${s.diskSizeGB} GB disk`),
    ...row('Network', s.networkAccess ? 'Egress allowed' : 'No egress'),
    ...row('Timeout', s.timeoutMinutes === -1 ? 'none' : `${s.timeoutMinutes} min${s.idleTimeoutMinutes ? ` (idle ${s.idleTimeoutMinutes} min)` : ''}`),
    ...row('Labels', s.labels.length ? h('span', { class: 'chips' }, ...s.labels.map((l) => h('span', { class: 'chip' }, l))) : '–'),
    ...row('Owner', h('span', { class: 'mono' }, s.userId ?? '–'), ),
    ...row('Team', s.teamId ? h('span', { class: 'mono' }, s.teamId) : '–'),
    ...row('Created', ago(s.createdAt)),
    ...row('Started', ago(s.startedAt)),
    ...(s.terminatedAt ? row('Ended', ago(s.terminatedAt)) : []),
    ...(s.terminationReason ? row('Reason', s.terminationReason) : []),
    ...(s.errorType || s.errorMessage ? row('Error', h('span', { class: 'form-error' }, `${s.errorType ?? ''} ${s.errorMessage ?? ''}`.trim())) : []),
  );
}

function renderLogs(panel: HTMLElement, id: string): Cleanup {
  const pre = h('pre', { class: 'log', id: 'logs' }, 'Loading…');
  const problem = h('p', { class: 'form-error' });
  let stopped = false;
  let timer: number | undefined;
  const load = async (): Promise<void> => {
    window.clearTimeout(timer);
    try {
      const { logs } = await api<{ logs: string }>('GET', `/sandbox/${encodeURIComponent(id)}/logs`);
      if (stopped) return;
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = logs === '' ? '(no output yet)' : logs;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      problem.textContent = '';
    } catch (error) {
      if (!stopped) problem.textContent = errorText(error);
    }
    if (!stopped) timer = window.setTimeout(() => void load(), 5000);
  };
  replace(panel, h('p', { class: 'muted' }, 'The start command’s output; refreshed every 5 s.'), problem, pre);
  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function renderEvents(panel: HTMLElement, id: string): Cleanup {
  const tbody = h('tbody', { id: 'event-rows' });
  const state = h('span', { class: 'muted', id: 'events-state' }, 'Following…');
  const gone = new AbortController();
  replace(
    panel,
    h('p', {}, state),
    h('div', { class: 'table-card' }, h('table', { class: 'table' }, h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Event'), h('th', {}, 'By'), h('th', {}, 'Details'))), tbody)),
  );
  followNdjson(`/sandbox/${encodeURIComponent(id)}/events?follow=true`, gone.signal, (item) => {
    const e = item as SandboxEvent;
    tbody.append(
      h(
        'tr',
        { 'data-event-type': e.type },
        h('td', { class: 'nowrap' }, h('time', { datetime: e.at, title: e.at }, new Date(e.at).toLocaleTimeString())),
        h('td', {}, h('span', { class: 'tag' }, e.type)),
        h('td', { class: 'mono small' }, e.actor?.userId ?? 'system'),
        h('td', { class: 'mono small wrap' }, JSON.stringify(e.data)),
      ),
    );
  }).then(
    () => {
      state.textContent = 'The sandbox has ended: this is its whole timeline.';
    },
    (error: unknown) => {
      if (!gone.signal.aborted) state.textContent = `Stream stopped: ${errorText(error)}`;
    },
  );
  return () => gone.abort();
}

function renderStats(panel: HTMLElement, id: string): Cleanup {
  const samples: Stats[] = [];
  const cpu: number[] = [];
  const memory: number[] = [];
  const grid = h('div', { class: 'stat-grid', id: 'stats' });
  const problem = h('p', { class: 'form-error' });
  let stopped = false;
  let timer: number | undefined;
  const tile = (label: string, value: string, sub: string, series?: number[], max?: number): HTMLElement =>
    h('div', { class: 'card stat' }, h('div', { class: 'stat-label' }, label), h('div', { class: 'stat-value' }, value), h('div', { class: 'muted small' }, sub), series ? sparkline(series, max ?? 1) : null);
  const load = async (): Promise<void> => {
    window.clearTimeout(timer);
    try {
      const s = await api<Stats>('GET', `/sandbox/${encodeURIComponent(id)}/stats`);
      if (stopped) return;
      const previous = samples[samples.length - 1];
      samples.push(s);
      if (previous) {
        const seconds = (Date.parse(s.at) - Date.parse(previous.at)) / 1000;
        const used = seconds > 0 ? (s.cpu.usageSeconds - previous.cpu.usageSeconds) / seconds : 0;
        cpu.push(Math.max(0, used));
      }
      memory.push(s.memory.usedBytes);
      for (const series of [cpu, memory]) if (series.length > 60) series.shift();
      if (samples.length > 2) samples.shift();
      const cores = cpu[cpu.length - 1];
      replace(
        grid,
        tile('CPU', cores === undefined ? '…' : `${(cores * 100).toFixed(0)} %`, `of ${s.cpu.limitCores} core${s.cpu.limitCores === 1 ? '' : 's'} (100 % = one core)`, cpu, s.cpu.limitCores),
        tile('Memory', bytes(s.memory.usedBytes), `of ${bytes(s.memory.limitBytes)}`, memory, s.memory.limitBytes),
        tile('Disk', bytes(s.disk.usedBytes), `of ${bytes(s.disk.limitBytes)}`),
        tile('Processes', String(s.pids), 'in the sandbox'),
        tile('Network', s.network ? `↓ ${bytes(s.network.rxBytes)}` : '–', s.network ? `↑ ${bytes(s.network.txBytes)}` : 'no network namespace'),
      );
      problem.textContent = '';
    } catch (error) {
      if (stopped) return;
      problem.textContent = error instanceof ApiCallError && error.status === 409 ? 'Stats are shown while the sandbox is RUNNING or PAUSED.' : errorText(error);
    }
    if (!stopped) timer = window.setTimeout(() => void load(), 3000);
  };
  replace(panel, h('p', { class: 'muted' }, 'Sampled every 3 s while this tab is open.'), problem, grid);
  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function renderExposures(panel: HTMLElement, id: string): Cleanup {
  const body = h('div', {}, 'Loading…');
  replace(panel, body);
  api<{ exposures: Exposure[] }>('GET', `/sandbox/${encodeURIComponent(id)}/expose`).then(
    ({ exposures }) => {
      if (exposures.length === 0) {
        replace(body, h('p', { class: 'muted' }, 'No ports exposed. Expose one with '), h('code', {}, `corral sandbox expose ${id} <port>`));
        return;
      }
      replace(
        body,
        h(
          'div',
          { class: 'table-card' },
          h(
            'table',
            { class: 'table' },
            h('thead', {}, h('tr', {}, ...['Port', 'Name', 'Protocol', 'URL', 'Created'].map((c) => h('th', {}, c)))),
            h(
              'tbody',
              {},
              ...exposures.map((x) =>
                h(
                  'tr',
                  {},
                  h('td', { class: 'num' }, String(x.port)),
                  h('td', {}, x.name ?? '–'),
                  h('td', {}, x.protocol ?? '–'),
                  // Only http(s) URLs become links; anything else is shown as text.
                  h('td', { class: 'mono small' }, /^https?:\/\//.test(x.url) ? h('a', { href: x.url, target: '_blank', rel: 'noopener noreferrer' }, x.url) : x.url, x.external_endpoint ? h('div', {}, x.external_endpoint) : null),
                  h('td', {}, ago(x.created_at)),
                ),
              ),
            ),
          ),
        ),
      );
    },
    (error: unknown) => replace(body, h('p', { class: 'form-error' }, errorText(error))),
  );
  return () => undefined;
}

/**
 * Loads xterm.js (a separate chunk, nine tenths of the bundle) only when a terminal is opened,
 * then opens one in `panel`.
 */
function openTerminal(panel: HTMLElement, id: string): Cleanup {
  let closed = false;
  let close: Cleanup | null = null;
  replace(panel, h('p', { class: 'muted' }, 'Loading the terminal…'));
  import('./terminal.js').then(
    ({ renderTerminal }) => {
      if (closed) return;
      replace(panel);
      close = renderTerminal(panel, id);
    },
    (error: unknown) => replace(panel, h('p', { class: 'form-error' }, `Could not load the terminal: ${errorText(error)}`)),
  );
  return () => {
    closed = true;
    close?.();
  };
}

/** One sandbox: details (status polled), and tabs for its terminal, logs, events, stats and exposures. */
export function renderSandboxDetail({ root }: PageContext, id: string): Cleanup {
  let stopped = false;
  let timer: number | undefined;
  let tab: Tab = 'overview';
  let tabCleanup: Cleanup | null = null;
  let sandbox: Sandbox | null = null;
  const title = h('h1', {}, '…');
  const badge = h('span', { id: 'detail-status' });
  const problem = h('p', { class: 'form-error', role: 'alert' });
  const panel = h('section', { class: 'panel', id: 'tab-panel' });
  const tabBar = h('div', { class: 'tabs', role: 'tablist' });
  const deleteButton = h('button', { class: 'btn btn-danger', type: 'button', id: 'delete-sandbox' }, 'Delete');

  const showTab = (next: Tab): void => {
    tab = next;
    tabCleanup?.();
    tabCleanup = null;
    replace(
      tabBar,
      ...TABS.map((t) => h('button', { type: 'button', role: 'tab', class: t === tab ? 'tab active' : 'tab', 'data-tab': t, 'aria-selected': String(t === tab), onclick: () => showTab(t) }, TAB_LABELS[t])),
    );
    replace(panel);
    if (tab === 'overview') replace(panel, sandbox ? details(sandbox) : 'Loading…');
    else if (tab === 'terminal') {
      if (sandbox?.status !== 'RUNNING') replace(panel, h('p', { class: 'muted' }, 'The terminal opens once the sandbox is RUNNING.'));
      else tabCleanup = openTerminal(panel, id);
    } else if (tab === 'logs') tabCleanup = renderLogs(panel, id);
    else if (tab === 'events') tabCleanup = renderEvents(panel, id);
    else if (tab === 'stats') tabCleanup = renderStats(panel, id);
    else tabCleanup = renderExposures(panel, id);
  };

  const load = async (): Promise<void> => {
    window.clearTimeout(timer);
    try {
      const s = await api<Sandbox>('GET', `/sandbox/${encodeURIComponent(id)}`);
      if (stopped) return;
      const wasRunning = sandbox?.status === 'RUNNING';
      sandbox = s;
      title.textContent = s.name;
      replace(badge, statusBadge(s.status));
      deleteButton.hidden = ENDED.includes(s.status);
      problem.textContent = '';
      if (tab === 'overview') replace(panel, details(s));
      else if (tab === 'terminal' && !wasRunning && s.status === 'RUNNING') showTab('terminal');
    } catch (error) {
      if (!stopped) problem.textContent = errorText(error);
    }
    if (!stopped) timer = window.setTimeout(() => void load(), 3000);
  };

  deleteButton.addEventListener('click', () => {
    if (!window.confirm(`Delete sandbox ${sandbox?.name ?? id} (${id})?`)) return;
    api('DELETE', `/sandbox/${encodeURIComponent(id)}`).then(
      () => void load(),
      (error: unknown) => {
        problem.textContent = errorText(error);
      },
    );
  });

  replace(
    root,
    h('a', { href: '#/sandboxes', class: 'back' }, '← Sandboxes'),
    h('div', { class: 'page-head' }, title, badge, h('span', { class: 'spacer' }), deleteButton),
    problem,
    tabBar,
    panel,
  );
  showTab('overview');
  void load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    tabCleanup?.();
  };
}
