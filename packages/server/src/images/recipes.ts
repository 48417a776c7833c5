import { createHash } from 'node:crypto';
import { DEFAULT_PATH } from '../runtime/container-policy.js';

/** The kinds of rootfs this library can build without a registry. */
export type RootfsKind = 'python' | 'busybox';

/** How a rootfs kind is built and how Docker should run it. */
export interface RootfsRecipe {
  readonly kind: RootfsKind;
  /** Bump when the recipe changes in a way the inputs below do not capture: it invalidates the cache. */
  readonly version: number;
  /** Debian packages (python) or applets source (busybox) that go into the rootfs. */
  readonly packages: readonly string[];
  /** Environment baked into the image config. */
  readonly env: readonly string[];
  /** Default command baked into the image config. */
  readonly cmd: readonly string[];
}

/** PATH used by both images, the same as Docker's official images (and every driver's default for a bare rootfs). */
export { DEFAULT_PATH };

/** Label on images this library builds; its value is the rootfs content key. */
export const RECIPE_LABEL = 'io.corral.image.recipe';

/** The recipes, by kind. */
export const RECIPES: Readonly<Record<RootfsKind, RootfsRecipe>> = {
  python: {
    kind: 'python',
    version: 1,
    // Debian bookworm's python3 is 3.11, the minor version of python:3.11-slim. pip and the `python`
    // name are there because agents expect them; Recommends are not installed.
    packages: ['python3', 'python3-pip', 'python-is-python3', 'ca-certificates'],
    env: [`PATH=${DEFAULT_PATH}`, 'LANG=C.UTF-8'],
    cmd: ['python3'],
  },
  busybox: {
    kind: 'busybox',
    version: 1,
    packages: ['busybox-static'],
    env: [`PATH=${DEFAULT_PATH}`],
    cmd: ['sh'],
  },
};

/** Debian suite the python rootfs is built from. */
export const DEBIAN_SUITE = 'bookworm';

/**
 * The plain-text material a content key hashes. scripts/build-images.sh computes the same string in
 * bash (it builds the default images without node_modules); a test checks that both agree.
 */
export function recipeMaterial(recipe: RootfsRecipe, extra = ''): string {
  return [recipe.kind, String(recipe.version), DEBIAN_SUITE, recipe.packages.join(','), recipe.env.join(';'), JSON.stringify(recipe.cmd), extra].join('|');
}

/**
 * The content key of a recipe: kind, recipe version and a short hash of everything that decides the
 * rootfs's content (`extra` carries inputs found on the host, such as the busybox binary's digest).
 */
export function recipeKey(recipe: RootfsRecipe, extra = ''): string {
  const digest = createHash('sha256').update(recipeMaterial(recipe, extra)).digest('hex').slice(0, 12);
  return `${recipe.kind}-v${recipe.version}-${digest}`;
}
