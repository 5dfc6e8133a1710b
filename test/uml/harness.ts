// Runs a command inside a user-mode-linux kernel: a real Linux 6.1 with the
// ip_vs modules this machine's kernel lacks, booted as an ordinary process.
//
// The guest's root is the host's file system through hostfs, mounted
// read-only; the guest gets its own /proc, /sys, /dev and /run (with TMPDIR
// and HOME in /run/tmp), and one writable hostfs mount of this run's
// temporary directory. It has no network
// device at all (only its loopback and the namespaces tests create inside it),
// so nothing it does reaches the host's network. Each run has its own
// temporary directory and UML umid, so runs can overlap. The kernel is killed
// (its whole process group) when the run ends however it ends.
//
// The guest's console carries the init script's progress markers; the
// command's stdout and stderr go to two more UML consoles mapped to pipes, so
// its output streams back byte for byte and is never mixed with kernel text.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const UML_KERNEL = '/usr/bin/linux.uml';
const UML_MODULES = '/usr/lib/uml/modules';

export interface UmlOptions {
  /** Command run in the guest, looked up in the host's PATH. */
  readonly argv: readonly string[];
  /** Guest working directory (the host path; the guest sees the same tree). */
  readonly cwd?: string;
  /** Modules loaded with modprobe before the command; a failure fails the run. */
  readonly modules?: readonly string[];
  /** Guest memory in MiB. */
  readonly memMiB?: number;
  /** From spawning the kernel to the guest's init running. */
  readonly bootTimeoutMs?: number;
  /** From the guest's init running to the command's exit. */
  readonly runTimeoutMs?: number;
  /** Extra environment for the command (the guest otherwise gets PATH, HOME and TMPDIR only). */
  readonly env?: Readonly<Record<string, string>>;
  readonly onStdout?: (chunk: Buffer) => void;
  readonly onStderr?: (chunk: Buffer) => void;
}

export interface UmlResult {
  /** The command's exit status inside the guest. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Host time from spawning the kernel to the guest's init running. */
  readonly bootMs: number;
  /** Host time spent loading the modules inside the guest. */
  readonly modulesMs: number;
  /** Host time from spawning the kernel to its process exiting. */
  readonly totalMs: number;
}

/** The UML kernel's release, from the one module tree the package installs. */
export function umlKernelRelease(): string {
  if (!existsSync(UML_KERNEL)) throw new Error(`${UML_KERNEL} is missing: install the user-mode-linux package (test/setup.sh does)`);
  const releases = existsSync(UML_MODULES) ? readdirSync(UML_MODULES) : [];
  if (releases.length !== 1) throw new Error(`expected one kernel release under ${UML_MODULES}, found ${JSON.stringify(releases)}`);
  return releases[0]!;
}

// Bounds for a hung kernel, not targets: a shared 2-core machine under load
// has taken 25 s to boot and several minutes for one guest suite.
const runTimeout = (opts: UmlOptions) => opts.runTimeoutMs ?? 1_800_000;
const bootTimeout = (opts: UmlOptions) => opts.bootTimeoutMs ?? 180_000;

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * The guest's PID 1. Markers on the console: `uml-booted`, `uml-modules-loaded`,
 * then `uml-exit <status>` or `uml-init-failed <step>`; then it powers the
 * kernel off through sysrq.
 */
function initScript(run: string, opts: UmlOptions): string {
  const env = Object.entries(opts.env ?? {}).map(([k, v]) => `export ${k}=${quote(v)}`);
  const modules = opts.modules ?? [];
  return [
    '#!/bin/sh',
    // Writable scratch space lives in the guest's /run: a tmpfs over /tmp would hide a checkout that lives there.
    'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/run/tmp TMPDIR=/run/tmp',
    'power_off() { echo o > /proc/sysrq-trigger; sleep 3600; }',
    'broken() { echo "uml-init-failed $1"; power_off; }',
    `mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 1777 /run/tmp && mkdir /run/uml && mount -t hostfs -o ${quote(run)} hostfs /run/uml || broken mounts`,
    'echo uml-booted',
    // Should the harness die without killing the kernel (SIGKILL), the guest still powers itself off.
    `(sleep ${Math.ceil(runTimeout(opts) / 1000) + 5}; echo uml-init-failed watchdog; power_off) &`,
    // Like any booted system the guest has its loopback up (and with it the local routing table IPVS consults).
    'ip link set lo up || broken loopback',
    // The kernel's own module requests (e.g. for iptables matches) go through the same module tree.
    'echo /run/uml/modprobe > /proc/sys/kernel/modprobe',
    modules.length > 0 ? `/run/uml/modprobe -a ${modules.map(quote).join(' ')} || broken modules` : ':',
    'echo uml-modules-loaded',
    'stty -F /dev/tty1 raw -echo && stty -F /dev/tty2 raw -echo || broken consoles',
    ...env,
    `cd ${quote(opts.cwd ?? process.cwd())} || broken cwd`,
    `${opts.argv.map(quote).join(' ')} >/dev/tty1 2>/dev/tty2`,
    'echo "uml-exit $?"',
    'power_off',
    '',
  ].join('\n');
}

/**
 * Boots the UML kernel, runs the command and returns its exit status and
 * output. Rejects (never resolves as a pass) when the kernel does not boot in
 * time, a module does not load, or the guest ends without reporting a status.
 */
export async function runInUml(opts: UmlOptions): Promise<UmlResult> {
  const release = umlKernelRelease();
  const run = await mkdtemp(join(tmpdir(), `uml-${process.pid}-`));
  try {
    // modprobe -d <root> reads <root>/lib/modules/<release>: point it at the package's tree without touching the host's /lib/modules.
    await mkdir(join(run, 'modroot/lib/modules'), { recursive: true });
    await symlink(join(UML_MODULES, release), join(run, 'modroot/lib/modules', release));
    await writeFile(join(run, 'modprobe'), `#!/bin/sh\nexec /usr/sbin/modprobe -d /run/uml/modroot "$@"\n`);
    await writeFile(join(run, 'init'), initScript(run, opts));
    await chmod(join(run, 'modprobe'), 0o755);
    await chmod(join(run, 'init'), 0o755);
    return await boot(run, opts);
  } finally {
    await rm(run, { recursive: true, force: true });
  }
}

function boot(run: string, opts: UmlOptions): Promise<UmlResult> {
  const umid = run.slice(run.lastIndexOf('/') + 1);
  const args = [
    `mem=${opts.memMiB ?? 384}M`, `umid=${umid}`, `uml_dir=${run}`,
    'root=/dev/root', 'rootfstype=hostfs', 'rootflags=/', 'ro', `init=${run}/init`,
    'quiet', 'loglevel=0',
    // No ethN= argument: the guest has no network device connected to the host.
    'con=null', 'con0=null,fd:1', 'con1=null,fd:3', 'con2=null,fd:4',
  ];
  const started = Date.now();
  // Detached: the kernel and its helper processes form one process group, killed together.
  const child = spawn(UML_KERNEL, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'], detached: true });
  const killGroup = () => {
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
  };
  // A signal that ends this process ends the kernel first, then takes its course.
  const onSignal = (signal: NodeJS.Signals) => {
    killGroup();
    process.kill(process.pid, signal);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  process.on('exit', killGroup);
  for (const signal of signals) process.once(signal, onSignal);

  let log = '';
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  let bootMs: number | null = null;
  let modulesMs = 0;
  let status: number | null = null;

  return new Promise<UmlResult>((resolve, reject) => {
    let failure: Error | null = null;
    const fail = (message: string) => {
      failure ??= new Error(`${message}\n--- UML console (last 2000 bytes) ---\n${log.slice(-2000)}`);
      killGroup();
    };
    let timer = setTimeout(() => fail(`UML kernel did not boot within ${bootTimeout(opts)} ms`), bootTimeout(opts));

    child.stdout!.on('data', (chunk: Buffer) => {
      log += chunk.toString('utf8').replaceAll('\r\n', '\n');
      if (bootMs === null && log.includes('uml-booted\n')) {
        bootMs = Date.now() - started;
        clearTimeout(timer);
        timer = setTimeout(() => fail(`command did not finish within ${runTimeout(opts)} ms`), runTimeout(opts));
      }
      if (modulesMs === 0 && bootMs !== null && log.includes('uml-modules-loaded\n')) modulesMs = Date.now() - started - bootMs;
      const exit = /uml-exit (\d+)\n/.exec(log);
      if (exit && status === null) {
        status = Number(exit[1]);
        // The guest powers off by itself; the bound only guards a kernel that hangs on the way down.
        clearTimeout(timer);
        timer = setTimeout(killGroup, 10_000);
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => { log += chunk.toString('utf8'); });
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => { stdout.push(chunk); opts.onStdout?.(chunk); });
    (child.stdio[4] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => { stderr.push(chunk); opts.onStderr?.(chunk); });
    child.on('error', (err) => fail(`cannot start ${UML_KERNEL}: ${err.message}`));
    child.on('close', () => {
      clearTimeout(timer);
      killGroup();
      process.off('exit', killGroup);
      for (const signal of signals) process.off(signal, onSignal);
      if (failure) return reject(failure);
      const broken = /uml-init-failed (\w+)\n/.exec(log);
      if (broken) return reject(new Error(`UML guest init failed at step "${broken[1]}"\n--- UML console ---\n${log.slice(-2000)}`));
      if (status === null) return reject(new Error(`UML kernel exited without the command's status\n--- UML console ---\n${log.slice(-2000)}`));
      resolve({
        code: status,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        bootMs: bootMs ?? 0,
        modulesMs,
        totalMs: Date.now() - started,
      });
    });
  });
}
