// Builds the native addons under native/ with node-gyp (bundled with npm)
// against the Node headers of this machine (npm's nodedir, /usr on Debian).
// Runs at `npm ci`; the nftables addon needs libnftnl-dev, libmnl-dev and pkg-config.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const npmDir = dirname(process.env.npm_execpath ?? '');
const candidates = [process.env.npm_config_node_gyp, join(npmDir, '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'), join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')];
const gyp = candidates.find((p) => p && existsSync(p));
if (!gyp) throw new Error('node-gyp not found (it ships with npm)');
const nodedir = process.env.npm_config_nodedir || '/usr';

for (const name of readdirSync(here)) {
  const dir = join(here, name);
  if (!existsSync(join(dir, 'binding.gyp'))) continue;
  execFileSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--loglevel=error'], { cwd: dir, stdio: 'inherit' });
}
