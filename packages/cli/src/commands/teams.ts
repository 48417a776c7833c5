import type { Command } from 'commander';
import { lazy } from '../run.js';
import { registerQuota } from './quota.js';

/**
 * `corral teams create|list|delete|members|add-member|remove-member|quota`; the implementations are
 * in `teams-actions.ts`, loaded when one runs.
 */
export function registerTeams(program: Command): void {
  const teams = program.command('teams').description('Manage teams and their members');
  teams
    .command('create <name>')
    .description('Create a team (admin)')
    .action(lazy(async () => (await import('./teams-actions.js')).createTeam));
  teams
    .command('list')
    .description('List teams (all for an admin, else your own)')
    .action(lazy(async () => (await import('./teams-actions.js')).listTeams));
  teams
    .command('delete <teamId>')
    .description('Delete a team (admin)')
    .action(lazy(async () => (await import('./teams-actions.js')).deleteTeam));
  teams
    .command('members <teamId>')
    .description("List a team's members")
    .action(lazy(async () => (await import('./teams-actions.js')).listMembers));
  teams
    .command('add-member <teamId> <userId>')
    .description('Add a member, or change their role')
    .option('--role <role>', 'member or admin', 'member')
    .action(lazy(async () => (await import('./teams-actions.js')).setMember));
  teams
    .command('remove-member <teamId> <userId>')
    .description('Remove a member')
    .action(lazy(async () => (await import('./teams-actions.js')).removeMember));
  registerQuota(teams, 'team');
}
