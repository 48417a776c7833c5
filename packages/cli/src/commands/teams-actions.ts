import type { SetTeamMemberRequest } from '@corral/sdk';
import { printResult } from '../output.js';
import type { GlobalOptions } from '../run.js';
import { clientFor } from '../sdk-client.js';

function printMessage(globals: GlobalOptions, result: { message: string }): void {
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}

/** `corral teams create NAME`. */
export async function createTeam(name: string, _options: object, globals: GlobalOptions): Promise<void> {
  const team = await clientFor(globals).teams.create(name);
  printResult(globals.output, team, [team], ['id', 'name', 'created_at']);
}

/** `corral teams list`: all for an admin, else your own. */
export async function listTeams(_options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).teams.list();
  printResult(globals.output, result, result.teams, ['id', 'name', 'role', 'created_at']);
}

/** `corral teams delete ID`. */
export async function deleteTeam(teamId: string, _options: object, globals: GlobalOptions): Promise<void> {
  printMessage(globals, await clientFor(globals).teams.delete(teamId));
}

/** `corral teams members ID`. */
export async function listMembers(teamId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).teams.members(teamId);
  printResult(globals.output, result, result.members, ['user_id', 'role', 'created_at']);
}

/** `corral teams add-member TEAM USER [--role member|admin]`: adds a member or changes their role (the server checks the role). */
export async function setMember(teamId: string, userId: string, options: { role: string }, globals: GlobalOptions): Promise<void> {
  const member = await clientFor(globals).teams.setMember(teamId, userId, options.role as SetTeamMemberRequest['role']);
  printResult(globals.output, member, [member], ['team_id', 'user_id', 'role']);
}

/** `corral teams remove-member TEAM USER`. */
export async function removeMember(teamId: string, userId: string, _options: object, globals: GlobalOptions): Promise<void> {
  printMessage(globals, await clientFor(globals).teams.removeMember(teamId, userId));
}
