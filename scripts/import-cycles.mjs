#!/usr/bin/env node
// Lists import cycles among the server's source files (tests, test support and the conformance
// cases left out), and cycles between its top-level folders (each file at the top counts alone).
// Usage: node scripts/import-cycles.mjs [packages/server/src]. Exits 1 when a file cycle spans folders.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { log } from 'node:console';
import process from 'node:process';

const root = resolve(process.argv[2] ?? 'packages/server/src');
const excluded = /\.test\.ts$|test-support|(^|\/)testing\/|\/conformance\//;
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith('.ts') && !excluded.test(relative(root, path))) files.push(path);
  }
};
walk(root);
const known = new Set(files);
const graph = new Map();
for (const file of files) {
  const source = readFileSync(file, 'utf8');
  const targets = [...source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'(\.[^']+)'/g)].map((m) => resolve(dirname(file), m[1].replace(/\.js$/, '.ts')));
  graph.set(file, targets.filter((t) => known.has(t)));
}

// Strongly connected components (Tarjan).
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const components = [];
const visit = (v) => {
  index.set(v, counter);
  low.set(v, counter);
  counter++;
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v)) {
    if (!index.has(w)) {
      visit(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
  }
  if (low.get(v) === index.get(v)) {
    const component = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) components.push(component);
  }
};
for (const file of files) if (!index.has(file)) visit(file);

const folder = (file) => {
  const path = relative(root, file);
  return path.includes('/') ? `${path.split('/')[0]}/` : path;
};
let spanning = 0;
for (const component of components) {
  const folders = [...new Set(component.map((f) => dirname(relative(root, f))))];
  if (folders.length > 1) spanning++;
  log(`file cycle (${component.length} files, in ${folders.join(', ')}):\n  ${component.map((f) => relative(root, f)).join('\n  ')}`);
}

const folderGraph = new Map();
for (const [file, targets] of graph) {
  for (const target of targets) {
    const [a, b] = [folder(file), folder(target)];
    if (a === b) continue;
    if (!folderGraph.has(a)) folderGraph.set(a, new Map());
    const edges = folderGraph.get(a);
    if (!edges.has(b)) edges.set(b, []);
    edges.get(b).push(`${relative(root, file)} -> ${relative(root, target)}`);
  }
}
const pathBetween = (from, to, seen = new Set()) => {
  if (from === to) return [to];
  if (seen.has(from)) return null;
  seen.add(from);
  for (const next of folderGraph.get(from)?.keys() ?? []) {
    const rest = pathBetween(next, to, seen);
    if (rest) return [from, ...rest];
  }
  return null;
};
for (const [a, edges] of folderGraph) {
  for (const [b, why] of edges) {
    const back = pathBetween(b, a);
    if (back) log(`folder cycle: ${[a, ...back].join(' -> ')}   [${why.slice(0, 2).join('; ')}]`);
  }
}
log(`${files.length} files, ${components.length} file cycles, ${spanning} spanning folders`);
process.exitCode = spanning > 0 ? 1 : 0;
