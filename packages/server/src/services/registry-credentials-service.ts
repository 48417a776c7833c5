import { ApiError } from '../errors/api-error.js';
import type { Store } from '../store/store.js';
import type { RegistryCredentialRecord } from '../records/account-records.js';
import { newId } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import type { Principal } from './auth-service.js';

/** Registry credentials as the API shows them: never the password. */
export interface RegistryCredentialView {
  id: string;
  name: string;
  server: string;
  createdAt: string;
  updatedAt: string;
  userId: string;
  teamId: string | null;
}

function view(c: RegistryCredentialRecord): RegistryCredentialView {
  return { id: c.id, name: c.name, server: c.server, createdAt: c.createdAt, updatedAt: c.updatedAt, userId: c.userId, teamId: c.teamId };
}

/**
 * Credentials for private image registries. A user sees their own and those of their teams;
 * the password is stored for pulls and never returned.
 */
export class RegistryCredentialsService {
  constructor(private readonly store: Store) {}

  async create(
    caller: Principal,
    input: { name: string; server: string; username: string; password: string; teamId: string | null },
  ): Promise<RegistryCredentialView> {
    if (input.teamId !== null && !caller.teams.has(input.teamId)) {
      throw ApiError.invalid('team_id', `you are not a member of team ${input.teamId}`);
    }
    const now = nowIso();
    const record: RegistryCredentialRecord = { id: newId(), userId: caller.user.id, ...input, createdAt: now, updatedAt: now };
    await this.store.insertRegistryCredential(record);
    return view(record);
  }

  async list(caller: Principal): Promise<RegistryCredentialView[]> {
    return (await this.store.listRegistryCredentials(caller.user.id, [...caller.teams.keys()])).map(view);
  }

  /** Credentials the caller may use, with the password, or undefined. */
  async usable(caller: Principal, id: string): Promise<RegistryCredentialRecord | undefined> {
    const credential = await this.store.getRegistryCredential(id);
    if (!credential) return undefined;
    const visible = credential.userId === caller.user.id || (credential.teamId !== null && caller.teams.has(credential.teamId));
    return visible ? credential : undefined;
  }

  async delete(caller: Principal, id: string): Promise<void> {
    const credential = await this.store.getRegistryCredential(id);
    if (!credential || credential.userId !== caller.user.id) {
      throw new ApiError('RESOURCE_NOT_FOUND', `Registry credentials ${id} not found`);
    }
    await this.store.deleteRegistryCredential(id);
  }
}
