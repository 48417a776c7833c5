/** An image of the images API: name, tag and owning team. */
export interface ImageRef {
  name: string;
  tag: string;
  teamId: string | undefined;
}

/**
 * Reads `name:tag`, `name` (tag `latest`) or `team-<id>/name:tag` (as `prime images` writes team
 * images); `team` (`--team`) names the team otherwise.
 */
export function parseImageRef(ref: string, team?: string): ImageRef {
  let rest = ref.trim();
  let teamId = team;
  const prefixed = /^team-([^/]+)\/(.+)$/.exec(rest);
  if (prefixed) {
    if (team !== undefined && team !== prefixed[1]) throw new Error(`${ref} names team ${prefixed[1]} but --team says ${team}`);
    teamId = prefixed[1];
    rest = prefixed[2] ?? '';
  }
  const colon = rest.lastIndexOf(':');
  const name = colon > 0 && !rest.slice(colon).includes('/') ? rest.slice(0, colon) : rest;
  const tag = colon > 0 && !rest.slice(colon).includes('/') ? rest.slice(colon + 1) : 'latest';
  if (name === '' || tag === '') throw new Error(`"${ref}" is not an image reference: use name:tag (e.g. myapp:v1)`);
  return { name, tag, teamId };
}
