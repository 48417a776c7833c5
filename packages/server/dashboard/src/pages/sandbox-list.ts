import { type Sandbox, api } from '../api.js';
import { type Child, ago, h, replace, statusBadge } from '../dom.js';
import type { Cleanup, PageContext } from '../main.js';

const STATUSES = ['PENDING', 'PROVISIONING', 'RUNNING', 'PAUSED', 'ERROR', 'TERMINATED', 'TIMEOUT'];
const POLL_MS = 3000;

interface ListResponse {
  sandboxes: Sandbox[];
  total: number;
}

/** Splits "a, b" into labels. */
function labelsOf(text: string): string[] {
  return text
    .split(',')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function labelChips(labels: string[]): HTMLElement {
  return h('span', { class: 'chips' }, ...labels.map((l) => h('span', { class: 'chip' }, l)));
}

/** The create form: name, image, CPU, memory, disk, start command, labels. */
function createForm(onCreated: (sandbox: Sandbox) => void, onCancel: () => void): HTMLElement {
  const field = (label: string, input: HTMLElement, hint?: string): HTMLElement =>
    h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
  const name = h('input', { id: 'create-name', required: true, maxlength: 100, value: `sandbox-${Math.random().toString(36).slice(2, 7)}` });
  const image = h('input', { id: 'create-image', required: true, maxlength: 512, value: 'python:3.11-slim' });
  const cpu = h('input', { id: 'create-cpu', type: 'number', min: 0.1, max: 16, step: 0.1, value: 1 });
  const memory = h('input', { id: 'create-memory', type: 'number', min: 0.1, max: 64, step: 0.1, value: 2 });
  const disk = h('input', { id: 'create-disk', type: 'number', min: 0.1, max: 1000, step: 0.1, value: 10 });
  const command = h('input', { id: 'create-command', placeholder: 'tail -f /dev/null', maxlength: 131072 });
  const labels = h('input', { id: 'create-labels', placeholder: 'team-a, experiment-7' });
  const problem = h('p', { class: 'form-error', role: 'alert' });
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'create-submit' }, 'Create sandbox');
  return h(
    'form',
    {
      class: 'card create-form',
      id: 'create-form',
      onsubmit: (event: Event) => {
        event.preventDefault();
        submit.setAttribute('disabled', '');
        problem.textContent = '';
        const body: Record<string, unknown> = {
          name: name.value.trim(),
          docker_image: image.value.trim(),
          cpu_cores: Number(cpu.value),
          memory_gb: Number(memory.value),
          disk_size_gb: Number(disk.value),
          labels: labelsOf(labels.value),
        };
        if (command.value.trim() !== '') body.start_command = command.value.trim();
        api<Sandbox>('POST', '/sandbox', body).then(onCreated, (error: unknown) => {
          submit.removeAttribute('disabled');
          problem.textContent = error instanceof Error ? error.message : String(error);
        });
      },
    },
    h('h2', {}, 'New sandbox'),
    h(
      'div',
      { class: 'form-grid' },
      field('Name', name),
      field('Image', image, 'Any image reference the server can pull or has built'),
      field('CPU cores', cpu),
      field('Memory (GB)', memory),
      field('Disk (GB)', disk),
      field('Start command', command, 'Empty: the image’s own command'),
      field('Labels', labels, 'Comma-separated'),
    ),
    problem,
    h('div', { class: 'actions' }, submit, h('button', { class: 'btn btn-ghost', type: 'button', onclick: onCancel }, 'Cancel')),
  );
}

/** The sandbox list: live status (polled), filters by status and label, create and delete. */
export function renderSandboxList({ root }: PageContext): Cleanup {
  let stopped = false;
  let timer: number | undefined;
  const status = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'Any status'), ...STATUSES.map((s) => h('option', { value: s }, s)));
  const label = h('input', { id: 'filter-labels', placeholder: 'Labels (all must match)', type: 'search' });
  const active = h('input', { id: 'filter-active', type: 'checkbox', checked: true });
  const summary = h('span', { class: 'muted', id: 'list-summary' });
  const problem = h('p', { class: 'form-error', role: 'alert' });
  const tbody = h('tbody', { id: 'sandbox-rows' });
  const formSlot = h('div');

  // Only the newest request's answer is shown: a poll still in flight when a filter changes is dropped.
  let latest = 0;
  const refresh = async (): Promise<void> => {
    window.clearTimeout(timer);
    const mine = ++latest;
    const query = new URLSearchParams({ per_page: '200' });
    if (status.value !== '') query.set('status', status.value);
    else if (active.checked) query.set('is_active', 'true');
    for (const l of labelsOf(label.value)) query.append('labels', l);
    try {
      const list = await api<ListResponse>('GET', `/sandbox?${query.toString()}`);
      if (stopped || mine !== latest) return;
      problem.textContent = '';
      summary.textContent = `${list.total} sandbox${list.total === 1 ? '' : 'es'}`;
      renderRows(list.sandboxes);
    } catch (error) {
      if (stopped || mine !== latest) return;
      problem.textContent = error instanceof Error ? error.message : String(error);
    }
    if (!stopped && mine === latest) timer = window.setTimeout(() => void refresh(), POLL_MS);
  };

  const remove = (sandbox: Sandbox): void => {
    if (!window.confirm(`Delete sandbox ${sandbox.name} (${sandbox.id})?`)) return;
    api('DELETE', `/sandbox/${encodeURIComponent(sandbox.id)}`).then(
      () => void refresh(),
      (error: unknown) => {
        problem.textContent = error instanceof Error ? error.message : String(error);
      },
    );
  };

  const renderRows = (sandboxes: Sandbox[]): void => {
    if (sandboxes.length === 0) {
      replace(tbody, h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No sandboxes match. Create one with “New sandbox”.')));
      return;
    }
    replace(
      tbody,
      ...sandboxes.map((s) => {
        const ended = ['ERROR', 'TERMINATED', 'TIMEOUT'].includes(s.status);
        const cells: Child[] = [
          h('td', {}, h('a', { href: `#/sandboxes/${encodeURIComponent(s.id)}`, class: 'strong' }, s.name), h('div', { class: 'mono muted small' }, s.id)),
          h('td', {}, statusBadge(s.status), s.errorType ? h('div', { class: 'small muted' }, s.errorType) : null),
          h('td', { class: 'mono small' }, s.dockerImage),
          h('td', { class: 'num' }, `${s.cpuCores}`),
          h('td', { class: 'num' }, `${s.memoryGB} GB`),
          h('td', {}, labelChips(s.labels)),
          h('td', {}, ago(s.createdAt)),
          h('td', { class: 'row-actions' }, ended ? null : h('button', { class: 'btn btn-danger btn-small', type: 'button', 'data-action': 'delete', onclick: () => remove(s) }, 'Delete')),
        ];
        return h('tr', { 'data-sandbox-id': s.id, 'data-name': s.name }, ...cells);
      }),
    );
  };

  const showForm = (): void => {
    replace(
      formSlot,
      createForm(
        (created) => {
          replace(formSlot);
          location.hash = `#/sandboxes/${encodeURIComponent(created.id)}`;
        },
        () => replace(formSlot),
      ),
    );
  };

  for (const input of [status, active]) input.addEventListener('change', () => void refresh());
  label.addEventListener('input', () => void refresh());

  replace(
    root,
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Sandboxes'),
      summary,
      h('button', { class: 'btn btn-primary', type: 'button', id: 'new-sandbox', onclick: showForm }, 'New sandbox'),
    ),
    formSlot,
    h('div', { class: 'filters' }, status, label, h('label', { class: 'check' }, active, 'Active only')),
    problem,
    h(
      'div',
      { class: 'table-card' },
      h(
        'table',
        { class: 'table', id: 'sandbox-table' },
        h('thead', {}, h('tr', {}, ...['Name', 'Status', 'Image', 'CPU', 'Memory', 'Labels', 'Created', ''].map((c) => h('th', {}, c)))),
        tbody,
      ),
    ),
  );
  void refresh();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
