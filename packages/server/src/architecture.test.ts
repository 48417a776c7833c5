import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';

/**
 * The server's import graph, checked the way `docs/architecture.md` draws it: no circle of imports
 * may span two folders, and no two folders may import each other at all. (Which layer may import which is the ESLint rule in `eslint.config.js`;
 * a circle inside one layer would slip past that rule, so this test looks for them.)
 */
const SRC = new URL('.', import.meta.url).pathname;

/** Every file the server ships: what its emitting build (`tsconfig.json`) compiles. Tests and their helpers may import anything. */
function sourceFiles(): string[] {
  const configPath = join(SRC, '..', 'tsconfig.json');
  const { config } = ts.readConfigFile(configPath, ts.sys.readFile) as { config: unknown };
  return ts.parseJsonConfigFileContent(config, ts.sys, dirname(configPath)).fileNames.map((file) => resolve(file));
}

/** The files under `src/` that `file` imports (statically or by `import()`), resolved from `.js` specifiers. */
function importsOf(file: string, known: Set<string>): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => resolve(dirname(file), name.replace(/\.js$/, '.ts')))
    .filter((path) => known.has(path));
}

/** Strongly connected components of size > 1 (Tarjan). */
function circles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indexOf = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    indexOf.set(node, index);
    low.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!indexOf.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(next) ?? 0));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) ?? 0, indexOf.get(next) ?? 0));
      }
    }
    if (low.get(node) === indexOf.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop();
        if (member === undefined) break;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component);
    }
  };
  for (const node of graph.keys()) if (!indexOf.has(node)) visit(node);
  return found;
}

/** The top folder of a file under `src/`; a file directly in `src/` is a unit of its own. */
const folderOf = (file: string): string => {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? `${parts[0]}/` : (parts[0] ?? '');
};

test('no import circle spans two folders of the server', () => {
  const files = sourceFiles();
  const known = new Set(files);
  const graph = new Map(files.map((file) => [file, importsOf(file, known)]));
  assert.ok(graph.size > 100, 'the scan found the server sources');
  const crossing = circles(graph)
    .filter((component) => new Set(component.map(folderOf)).size > 1)
    .map((component) => component.map((file) => relative(SRC, file)).sort());
  assert.deepEqual(crossing, [], `import circles across folders:\n${crossing.map((c) => `  ${c.join(' → ')}`).join('\n')}`);
});

test('no two folders of the server import each other, even through different files', () => {
  const files = sourceFiles();
  const known = new Set(files);
  const folders = new Map<string, Set<string>>();
  for (const file of files) {
    const from = folderOf(file);
    const targets = folders.get(from) ?? new Set<string>();
    for (const target of importsOf(file, known)) if (folderOf(target) !== from) targets.add(folderOf(target));
    folders.set(from, targets);
  }
  const graph = new Map([...folders].map(([folder, targets]) => [folder, [...targets]]));
  const found = circles(graph).map((c) => c.sort());
  assert.deepEqual(found, [], `folders that import each other:\n${found.map((c) => `  ${c.join(' ⇄ ')}`).join('\n')}`);
});

test('the circle finder finds a circle', () => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  assert.deepEqual(circles(graph).map((c) => c.sort()), [['a', 'b', 'c']]);
});
