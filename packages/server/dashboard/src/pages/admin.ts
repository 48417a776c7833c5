import { api } from '../api.js';
import { ago, h, replace } from '../dom.js';
import type { Cleanup, PageContext } from '../main.js';

interface User {
  id: string;
  name: string;
  email: string | null;
  is_admin: boolean;
  created_at: string;
}
interface Key {
  id: string;
  name: string;
  prefix: string;
  user_id: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}
interface Team {
  id: string;
  name: string;
  created_at: string;
}
interface Member {
  team_id: string;
  user_id: string;
  role: string;
  created_at: string;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function table(headers: string[], rows: HTMLElement[], empty: string, id?: string): HTMLElement {
  return h(
    'div',
    { class: 'table-card' },
    h(
      'table',
      { class: 'table', id },
      h('thead', {}, h('tr', {}, ...headers.map((c) => h('th', {}, c)))),
      h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, empty))])),
    ),
  );
}

/** Administration (admins only): users, their API keys (create, revoke) and team members. */
export function renderAdmin({ root, me }: PageContext): Cleanup {
  if (!me.user.is_admin) {
    replace(root, h('h1', {}, 'Keys & teams'), h('p', { class: 'muted' }, 'Only administrators manage keys and teams.'));
    return () => undefined;
  }
  const problem = h('p', { class: 'form-error', role: 'alert' });
  const users = h('section', { class: 'card' });
  const keys = h('section', { class: 'card' });
  const teams = h('section', { class: 'card' });
  let userList: User[] = [];
  let keyUser = me.user.id;
  let team: string | null = null;
  const fail = (error: unknown): void => {
    problem.textContent = errorText(error);
  };

  const loadUsers = async (): Promise<void> => {
    userList = (await api<{ users: User[] }>('GET', '/users')).users;
    replace(
      users,
      h('h2', {}, 'Users'),
      table(
        ['Name', 'ID', 'Role', 'Created'],
        userList.map((u) => h('tr', {}, h('td', { class: 'strong' }, u.name), h('td', { class: 'mono small' }, u.id), h('td', {}, u.is_admin ? h('span', { class: 'tag' }, 'admin') : 'user'), h('td', {}, ago(u.created_at)))),
        'No users.',
      ),
    );
  };

  const loadKeys = async (): Promise<void> => {
    const list = (await api<{ keys: Key[] }>('GET', `/keys?user_id=${encodeURIComponent(keyUser)}`)).keys;
    const who = h('select', { id: 'key-user' }, ...userList.map((u) => h('option', { value: u.id, selected: u.id === keyUser }, u.name)));
    who.addEventListener('change', () => {
      keyUser = who.value;
      loadKeys().catch(fail);
    });
    const name = h('input', { id: 'key-name', placeholder: 'Key name', maxlength: 100 });
    const secret = h('div', { id: 'new-key' });
    const create = h('form', {
      class: 'inline-form',
      onsubmit: (event: Event) => {
        event.preventDefault();
        api<Key & { key: string }>('POST', '/keys', { user_id: keyUser, name: name.value.trim() || 'dashboard key' }).then(async (created) => {
          await loadKeys();
          replace(
            document.getElementById('new-key') ?? secret,
            h('div', { class: 'notice' }, h('strong', {}, 'New key — shown only this once: '), h('code', { class: 'mono select-all' }, created.key)),
          );
        }, fail);
      },
    }, name, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Create key'));
    const revoke = (key: Key): void => {
      if (!window.confirm(`Revoke key ${key.name} (${key.prefix}…)? Clients using it stop working at once.`)) return;
      api('DELETE', `/keys/${encodeURIComponent(key.id)}`).then(() => loadKeys(), fail);
    };
    replace(
      keys,
      h('div', { class: 'section-head' }, h('h2', {}, 'API keys of'), who),
      create,
      secret,
      table(
        ['Name', 'Prefix', 'Created', 'Last used', 'State', ''],
        list.map((k) =>
          h(
            'tr',
            {},
            h('td', { class: 'strong' }, k.name),
            h('td', { class: 'mono small' }, `${k.prefix}…`),
            h('td', {}, ago(k.created_at)),
            h('td', {}, ago(k.last_used_at)),
            h('td', {}, k.revoked_at ? h('span', { class: 'badge badge-terminated' }, 'revoked') : h('span', { class: 'badge badge-running' }, 'active')),
            h('td', { class: 'row-actions' }, k.revoked_at ? null : h('button', { class: 'btn btn-danger btn-small', type: 'button', onclick: () => revoke(k) }, 'Revoke')),
          ),
        ),
        'No keys.',
        'key-table',
      ),
    );
  };

  const loadTeams = async (): Promise<void> => {
    const list = (await api<{ teams: Team[] }>('GET', '/teams')).teams;
    if (team === null || !list.some((t) => t.id === team)) team = list[0]?.id ?? null;
    const newTeam = h('input', { placeholder: 'New team name', maxlength: 64, id: 'team-name' });
    const createTeam = h('form', {
      class: 'inline-form',
      onsubmit: (event: Event) => {
        event.preventDefault();
        api<Team>('POST', '/teams', { name: newTeam.value.trim() }).then((t) => {
          team = t.id;
          return loadTeams();
        }, fail);
      },
    }, newTeam, h('button', { class: 'btn', type: 'submit' }, 'Create team'));
    if (team === null) {
      replace(teams, h('h2', {}, 'Teams'), createTeam, h('p', { class: 'muted' }, 'No teams yet.'));
      return;
    }
    const picker = h('select', { id: 'team-picker' }, ...list.map((t) => h('option', { value: t.id, selected: t.id === team }, t.name)));
    picker.addEventListener('change', () => {
      team = picker.value;
      loadTeams().catch(fail);
    });
    const teamId = team;
    const members = (await api<{ members: Member[] }>('GET', `/teams/${encodeURIComponent(teamId)}/members`)).members;
    const nameOf = (id: string): string => userList.find((u) => u.id === id)?.name ?? id;
    const who = h('select', {}, ...userList.map((u) => h('option', { value: u.id }, u.name)));
    const role = h('select', {}, h('option', { value: 'member' }, 'member'), h('option', { value: 'admin' }, 'admin'));
    const add = h('form', {
      class: 'inline-form',
      onsubmit: (event: Event) => {
        event.preventDefault();
        api('PUT', `/teams/${encodeURIComponent(teamId)}/members/${encodeURIComponent(who.value)}`, { role: role.value }).then(() => loadTeams(), fail);
      },
    }, who, role, h('button', { class: 'btn', type: 'submit' }, 'Add or change member'));
    const remove = (m: Member): void => {
      if (!window.confirm(`Remove ${nameOf(m.user_id)} from the team?`)) return;
      api('DELETE', `/teams/${encodeURIComponent(teamId)}/members/${encodeURIComponent(m.user_id)}`).then(() => loadTeams(), fail);
    };
    replace(
      teams,
      h('div', { class: 'section-head' }, h('h2', {}, 'Members of team'), picker),
      createTeam,
      add,
      table(
        ['User', 'Role', 'Since', ''],
        members.map((m) =>
          h('tr', {}, h('td', { class: 'strong' }, nameOf(m.user_id)), h('td', {}, m.role), h('td', {}, ago(m.created_at)), h('td', { class: 'row-actions' }, h('button', { class: 'btn btn-danger btn-small', type: 'button', onclick: () => remove(m) }, 'Remove'))),
        ),
        'No members.',
      ),
    );
  };

  replace(root, h('div', { class: 'page-head' }, h('h1', {}, 'Keys & teams')), problem, h('div', { class: 'admin-grid' }, users, keys, teams));
  loadUsers()
    .then(() => Promise.all([loadKeys(), loadTeams()]))
    .catch(fail);
  return () => undefined;
}
