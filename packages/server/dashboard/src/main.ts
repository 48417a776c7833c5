/**
 * The dashboard's entry point: sign-in, the top bar and a hash router (`#/sandboxes`,
 * `#/sandboxes/<id>`, `#/admin`). Each page returns a cleanup that stops its polling, streams
 * and WebSocket when the operator navigates away.
 */
import { type Me, ApiCallError, SIGNED_OUT_EVENT, api, apiKey, setApiKey } from './api.js';
import { h, replace } from './dom.js';
import { renderAdmin } from './pages/admin.js';
import { renderSandboxDetail } from './pages/sandbox-detail.js';
import { renderSandboxList } from './pages/sandbox-list.js';
import { renderSignIn } from './pages/sign-in.js';

/** What a page gets: where to draw, and who is signed in. */
export interface PageContext {
  root: HTMLElement;
  me: Me;
}

/** Stops what a page started. */
export type Cleanup = () => void;

const app = document.getElementById('app') as HTMLElement;
let cleanup: Cleanup | null = null;
let me: Me | null = null;

function signOut(): void {
  setApiKey(null);
  me = null;
  location.hash = '#/';
  void route();
}

function topBar(current: string, who: Me): HTMLElement {
  const link = (href: string, label: string, active: boolean): HTMLElement =>
    h('a', { href, class: active ? 'nav-link active' : 'nav-link' }, label);
  return h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '#/sandboxes' }, h('span', { class: 'brand-mark' }, '▚'), 'Corral'),
    h(
      'nav',
      {},
      link('#/sandboxes', 'Sandboxes', current !== 'admin'),
      who.user.is_admin ? link('#/admin', 'Keys & teams', current === 'admin') : null,
    ),
    h(
      'div',
      { class: 'who' },
      h('span', { class: 'who-name', title: who.user.id }, who.user.name),
      who.user.is_admin ? h('span', { class: 'tag' }, 'admin') : null,
      h('button', { class: 'btn btn-ghost', type: 'button', id: 'sign-out', onclick: signOut }, 'Sign out'),
    ),
  );
}

async function route(): Promise<void> {
  cleanup?.();
  cleanup = null;
  if (apiKey() === null) {
    replace(app, renderSignIn(async () => {
      me = null;
      await route();
    }));
    return;
  }
  if (me === null) {
    try {
      me = await api<Me>('GET', '/me');
    } catch (error) {
      setApiKey(null);
      const message = error instanceof ApiCallError && error.status === 401 ? 'That API key was not accepted.' : String(error instanceof Error ? error.message : error);
      replace(app, renderSignIn(async () => route(), message));
      return;
    }
  }
  const hash = location.hash.replace(/^#\/?/, '');
  const [section, id] = hash.split('/');
  const main = h('main', { class: 'page' });
  const page = section === 'admin' ? 'admin' : section === 'sandboxes' && id ? 'detail' : 'list';
  replace(app, topBar(page, me), main);
  const context: PageContext = { root: main, me };
  if (page === 'admin') cleanup = renderAdmin(context);
  else if (page === 'detail') cleanup = renderSandboxDetail(context, decodeURIComponent(id as string));
  else cleanup = renderSandboxList(context);
}

window.addEventListener('hashchange', () => void route());
window.addEventListener(SIGNED_OUT_EVENT, () => {
  me = null;
  cleanup?.();
  cleanup = null;
  replace(app, renderSignIn(async () => route(), 'The API no longer accepts that key (revoked?). Sign in again.'));
});
void route();
