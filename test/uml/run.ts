// `npm run test:uml -- <compiled test files...>` runs them with `node --test`
// inside the UML kernel; `npm run test:uml -- --exec <command...>` runs any
// command there (with the IPVS modules loaded). Output streams back; the exit
// status is the guest command's.

import { runInUml } from './harness.js';
import { IPVS_MODULES, nodeTestArgv } from './node-tests.js';

const args = process.argv.slice(2);
const argv = args[0] === '--exec' ? args.slice(1) : nodeTestArgv(args);
if (args.length === 0 || argv.length === 0) {
  process.stderr.write('usage: run.js <compiled test file>... | run.js --exec <command>...\n');
  process.exit(2);
}
const result = await runInUml({
  argv,
  modules: IPVS_MODULES,
  onStdout: (chunk) => process.stdout.write(chunk),
  onStderr: (chunk) => process.stderr.write(chunk),
});
process.stderr.write(`uml: boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms, exit ${result.code}\n`);
process.exitCode = result.code;
