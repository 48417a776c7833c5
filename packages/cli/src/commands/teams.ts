import type { Command } from 'commander';
import { callApi, resolveTarget } from '../api-client.js';
import { printResult } from '../output.js';
import { type GlobalOptions, run } from '../run.js';
import { registerQuota } from './quota.js';

interface TeamView {
  id: string;
  name: string;
  created_at: string;
  role?: string | null;
}

function print(globals: GlobalOptions, result: { message: string }): void {
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}

/** `corral teams create|list|delete|members|add-member|remove-member|quota`. */
export function registerTeams(program: Command): void {
  const teams = program.command('teams').description('Manage teams and their members');
  teams
    .command('create <name>')
    .description('Create a team (admin)')
    .action(
      run(async (name: string, _options: object, globals: GlobalOptions) => {
        const team = await callApi<TeamView>(resolveTarget(globals), 'POST', '/teams', { name });
        printResult(globals.output, team, [team as unknown as Record<string, unknown>], ['id', 'name', 'created_at']);
      }),
    );
  teams
    .command('list')
    .description('List teams (all for an admin, else your own)')
    .action(
      run(async (_options: object, globals: GlobalOptions) => {
        const result = await callApi<{ teams: TeamView[] }>(resolveTarget(globals), 'GET', '/teams');
        printResult(globals.output, result, result.teams as unknown as Array<Record<string, unknown>>, ['id', 'name', 'role', 'created_at']);
      }),
    );
  teams
    .command('delete <teamId>')
    .description('Delete a team (admin)')
    .action(
      run(async (teamId: string, _options: object, globals: GlobalOptions) => {
        print(globals, await callApi(resolveTarget(globals), 'DELETE', `/teams/${encodeURIComponent(teamId)}`));
      }),
    );
  teams
    .command('members <teamId>')
    .description("List a team's members")
    .action(
      run(async (teamId: string, _options: object, globals: GlobalOptions) => {
        const result = await callApi<{ members: Array<Record<string, unknown>> }>(resolveTarget(globals), 'GET', `/teams/${encodeURIComponent(teamId)}/members`);
        printResult(globals.output, result, result.members, ['user_id', 'role', 'created_at']);
      }),
    );
  teams
    .command('add-member <teamId> <userId>')
    .description('Add a member, or change their role')
    .option('--role <role>', 'member or admin', 'member')
    .action(
      run(async (teamId: string, userId: string, options: { role: string }, globals: GlobalOptions) => {
        const member = await callApi<Record<string, unknown>>(
          resolveTarget(globals),
          'PUT',
          `/teams/${encodeURIComponent(teamId)}/members/${encodeURIComponent(userId)}`,
          { role: options.role },
        );
        printResult(globals.output, member, [member], ['team_id', 'user_id', 'role']);
      }),
    );
  teams
    .command('remove-member <teamId> <userId>')
    .description('Remove a member')
    .action(
      run(async (teamId: string, userId: string, _options: object, globals: GlobalOptions) => {
        print(globals, await callApi(resolveTarget(globals), 'DELETE', `/teams/${encodeURIComponent(teamId)}/members/${encodeURIComponent(userId)}`));
      }),
    );
  registerQuota(teams, 'team');
}
