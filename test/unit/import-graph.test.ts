// The pipeline reads one way: no module imports itself back through others
// (compiled dist/src, what Node loads), and no folder of src reaches into a
// folder that reaches back (TypeScript sources, type-only imports included).
// The root files (main, agent, log) compose everything and are left out of
// the folder check.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const DIST_SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const TS_SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

function filesUnder(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, ext));
    else if (name.endsWith(ext) && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Relative specifiers of static imports and re-exports, and of dynamic import() calls. */
export function importsOf(source: string): string[] {
  const specs: string[] = [];
  for (const m of source.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/gm)) specs.push(m[1]!);
  for (const m of source.matchAll(/^\s*import\s*['"](\.{1,2}\/[^'"]+)['"]/gm)) specs.push(m[1]!);
  for (const m of source.matchAll(/\bimport\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
  return specs;
}

/** Every cycle a depth-first walk meets, each as the path that closes it. */
export function findCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

function moduleGraph(root: string, ext: '.js' | '.ts'): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of filesUnder(root, ext)) {
    const deps = importsOf(readFileSync(file, 'utf8')).map((spec) => resolve(dirname(file), ext === '.ts' ? spec.replace(/\.js$/, '.ts') : spec));
    graph.set(relative(root, file), deps.filter((d) => d.startsWith(root)).map((d) => relative(root, d)));
  }
  return graph;
}

test('the cycle finder reports a cycle and passes an acyclic graph (so the checks below can fail)', () => {
  assert.deepEqual(findCycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c', 'a']]);
  assert.deepEqual(findCycles(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]])), []);
  assert.deepEqual(importsOf("import { x } from './a.js';\nimport type { Y } from '../b/c.js';\nexport * from './d.js';\nconst m = await import('./e.js');\nimport 'node:fs';"),
    ['./a.js', '../b/c.js', './d.js', './e.js']);
});

test('no import cycle among the compiled modules of dist/src', () => {
  const graph = moduleGraph(DIST_SRC, '.js');
  assert.ok(graph.size > 50, `read ${graph.size} modules`);
  assert.ok(graph.get('sync/engine.js')?.includes('selection/selection.js'), 'imports are resolved');
  assert.deepEqual(findCycles(graph).map((c) => c.join(' -> ')), []);
});

test('no two folders of src import each other, type-only imports included', () => {
  const files = moduleGraph(TS_SRC, '.ts');
  const folders = new Map<string, Set<string>>();
  for (const [file, deps] of files) {
    const from = dirname(file);
    if (from === '.') continue;
    const set = folders.get(from) ?? new Set<string>();
    folders.set(from, set);
    for (const dep of deps) if (dirname(dep) !== from && dirname(dep) !== '.') set.add(dirname(dep));
  }
  assert.ok(folders.get('sync')?.has('selection'), 'folder edges are collected');
  const graph = new Map([...folders].map(([k, v]) => [k, [...v]]));
  assert.deepEqual(findCycles(graph).map((c) => c.join(' -> ')), []);
});

test('the sync engine reaches no kernel interface: it programs through the Dataplane interface', () => {
  const files = moduleGraph(TS_SRC, '.ts');
  for (const file of ['sync/engine.ts', 'sync/dataplane.ts', 'selection/selection.ts']) {
    const kernel = (files.get(file) ?? []).filter((d) => /^(iptables|ipvs|nftables)\//.test(d));
    assert.deepEqual(kernel, [], `${file} imports ${kernel.join(', ')}`);
  }
});
