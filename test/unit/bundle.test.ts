import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// bin/clusterset-proxy runs the bundle npm run build writes; its source map
// must lead a stack trace back to the TypeScript source.

const root = new URL('../../../', import.meta.url);
const bundle = fileURLToPath(new URL('dist/agent/clusterset-proxy.mjs', root));
const bin = fileURLToPath(new URL('bin/clusterset-proxy', root));
const run = promisify(execFile);

test('the agent binary runs the bundle and answers --help', async () => {
  const { stdout } = await run(process.execPath, [bin, '--help']);
  assert.match(stdout, /--kubeconfig/);
});

test('a position in the bundle maps back to the line of src/ it came from', async () => {
  const text = await readFile(bundle, 'utf8');
  const at = text.indexOf('function parseFlags(');
  assert.ok(at > 0, 'the bundle carries parseFlags');
  const before = text.slice(0, at).split('\n');
  const line = before.length - 1;
  const column = before.at(-1)!.length;
  // The lookup runs where node loaded the bundle with source maps on, as the binary does.
  const script = `
    process.setSourceMapsEnabled(true);
    process.exit = () => {};
    process.stdout.write = () => true;
    process.argv = [process.argv[0], ${JSON.stringify(bin)}, '--help'];
    const { findSourceMap } = await import('node:module');
    await import(${JSON.stringify(bundle)});
    const entry = findSourceMap(${JSON.stringify(bundle)}).findEntry(${line}, ${column});
    console.error(JSON.stringify(entry));
  `;
  const { stderr } = await run(process.execPath, ['--input-type=module', '-e', script]);
  const entry = JSON.parse(stderr.trim().split('\n').at(-1)!) as { originalSource: string; originalLine: number };
  assert.match(entry.originalSource, /src\/cli\/flags\.ts$/);
  const source = (await readFile(new URL('src/cli/flags.ts', root), 'utf8')).split('\n');
  assert.match(source[entry.originalLine]!, /export function parseFlags\(/, 'the mapped line is the declaration');
});
