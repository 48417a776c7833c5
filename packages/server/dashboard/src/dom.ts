/**
 * The only way the dashboard makes DOM: elements with text set through `textContent` and attributes
 * through `setAttribute`. Sandbox names, labels, logs and event data are attacker-controlled, so
 * nothing here (or anywhere in the dashboard) assigns `innerHTML`.
 */

/** A child: a node, text (rendered as text, never parsed), or nothing. */
export type Child = Node | string | number | null | undefined | false;

/** Attributes; `on*` functions become event listeners, `false`/`null`/`undefined` are left out. */
export type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

/** Creates `<tag>` with attributes and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === 'value' && (el instanceof HTMLInputElement || el instanceof HTMLSelectElement || el instanceof HTMLTextAreaElement)) {
      el.value = String(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Appends children (text as text nodes). */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
}

/** Replaces all of `parent`'s children. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

/** A status pill: the class is chosen from a fixed list, the text is the status. */
export function statusBadge(status: string): HTMLElement {
  const known = ['PENDING', 'PROVISIONING', 'RUNNING', 'PAUSED', 'ERROR', 'TERMINATED', 'TIMEOUT'];
  const cls = known.includes(status) ? status.toLowerCase() : 'unknown';
  return h('span', { class: `badge badge-${cls}`, 'data-status': status }, status);
}

/** `12.3 MiB` style sizes. */
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A short relative time ("3 min ago") with the full time as a tooltip. */
export function ago(iso: string | null | undefined): HTMLElement | string {
  if (!iso) return '–';
  const at = new Date(iso);
  const seconds = Math.round((Date.now() - at.getTime()) / 1000);
  let text: string;
  if (seconds < 60) text = `${Math.max(seconds, 0)} s ago`;
  else if (seconds < 3600) text = `${Math.floor(seconds / 60)} min ago`;
  else if (seconds < 86_400) text = `${Math.floor(seconds / 3600)} h ago`;
  else text = `${Math.floor(seconds / 86_400)} d ago`;
  return h('time', { datetime: iso, title: at.toLocaleString() }, text);
}
