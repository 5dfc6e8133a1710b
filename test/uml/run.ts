// `npm run test:uml -- <compiled test files...>`: runs them inside the UML
// kernel, streams their TAP output and exits with their status.

import { runNodeTestsInUml } from './node-tests.js';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: run.js <compiled test file>...\n');
  process.exit(2);
}
const result = await runNodeTestsInUml(files, {
  onStdout: (chunk) => process.stdout.write(chunk),
  onStderr: (chunk) => process.stderr.write(chunk),
});
process.stderr.write(`uml: boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms, exit ${result.code}\n`);
process.exitCode = result.code;
