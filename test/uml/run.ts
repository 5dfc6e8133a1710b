// `npm run test:uml -- <compiled test files...>` runs them with `node --test`
// inside the UML kernel; `npm run test:uml -- --exec <command...>` runs any
// command there (with the IPVS modules loaded). `--mem <MiB>` first sets the
// guest's memory (the 10,000-service bench needs more than the default).
// Output streams back; the exit status is the guest command's.

import { runInUml } from './harness.js';
import { IPVS_MODULES, nodeTestArgv } from './node-tests.js';

let args = process.argv.slice(2);
let memMiB: number | undefined;
if (args[0] === '--mem') {
  memMiB = Number(args[1]);
  args = args.slice(2);
}
const argv = args[0] === '--exec' ? args.slice(1) : nodeTestArgv(args);
if (args.length === 0 || argv.length === 0 || (memMiB !== undefined && !(memMiB >= 64))) {
  process.stderr.write('usage: run.js [--mem <MiB>] <compiled test file>... | run.js [--mem <MiB>] --exec <command>...\n');
  process.exit(2);
}
const result = await runInUml({
  argv,
  modules: IPVS_MODULES,
  memMiB,
  onStdout: (chunk) => process.stdout.write(chunk),
  onStderr: (chunk) => process.stderr.write(chunk),
});
process.stderr.write(`uml: boot ${result.bootMs} ms, modules ${result.modulesMs} ms, total ${result.totalMs} ms, exit ${result.code}\n`);
process.exitCode = result.code;
