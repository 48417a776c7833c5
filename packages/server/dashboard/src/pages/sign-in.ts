import { ApiCallError, api, setApiKey } from '../api.js';
import { h } from '../dom.js';

/** The sign-in form: an API key, checked with `GET /me` and kept in sessionStorage. */
export function renderSignIn(onSignedIn: () => Promise<void>, error?: string): HTMLElement {
  const input = h('input', { id: 'api-key', type: 'password', name: 'api-key', autocomplete: 'off', placeholder: 'corral_…', required: true, spellcheck: 'false' });
  const problem = h('p', { class: 'form-error', role: 'alert' }, error ?? '');
  const button = h('button', { class: 'btn btn-primary', type: 'submit', id: 'sign-in' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'signin-card',
      onsubmit: (event: Event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (key === '') return;
        button.setAttribute('disabled', '');
        setApiKey(key);
        api('GET', '/me').then(
          () => onSignedIn(),
          (failure: unknown) => {
            setApiKey(null);
            button.removeAttribute('disabled');
            problem.textContent = failure instanceof ApiCallError && failure.status === 401 ? 'That API key was not accepted.' : String(failure instanceof Error ? failure.message : failure);
          },
        );
      },
    },
    h('div', { class: 'brand brand-large' }, h('span', { class: 'brand-mark' }, '▚'), 'Corral'),
    h('p', { class: 'muted' }, 'Sign in with an API key. It is kept in this tab only (sessionStorage) and sent as a Bearer token.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    problem,
    button,
  );
  return h('div', { class: 'signin' }, form);
}
