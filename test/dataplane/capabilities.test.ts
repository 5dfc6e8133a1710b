import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { serviceChainName } from '../../src/iptables/names.js';
import { endpoint, importedSlice, service } from '../support/fixtures.js';
import { AGENT_BIN, Lab } from '../support/lab.js';
import { netnsExec } from '../support/netns.js';

assert.equal(process.getuid?.(), 0, 'data-plane tests need root: run them as root (CI does)');

// The DaemonSet runs the agent unprivileged with the capabilities its
// manifest adds. This runs the binary under exactly that bounding set (root's
// capabilities after exec are the bounding set) and checks a real sync, and
// that it fails without them: the bound is real.

const manifest = parseAllDocuments(readFileSync(new URL('../../../daemonset/30-daemonset.yaml', import.meta.url), 'utf8')).map((d) => d.toJS());
const CAPABILITIES: string[] = manifest.find((d) => d.kind === 'DaemonSet').spec.template.spec.containers[0].securityContext.capabilities.add.map((c: string) => c.toLowerCase());
const CHAIN = serviceChainName('default', 'derived-serve', 'http', 'TCP');

for (const backend of ['nft', 'legacy'] as const) {
  describe(`agent with only ${CAPABILITIES.join(' and ')} on the ${backend} backend`, () => {
    const lab = new Lab(backend);
    let configPath = '';

    before(async () => {
      await lab.start();
      configPath = await lab.writeConfig({ clusterName: 'brazil', clusters: [{ name: 'brazil' }, { name: 'chile01' }], clusterCIDR: '10.244.0.0/16' });
      lab.apply(
        service('default', 'derived-serve', '10.96.0.50', [{ name: 'http', port: 80 }]),
        importedSlice('default', 'chile01', 'serve-abc', 'derived-serve', [endpoint('10.2.0.10')]),
      );
    });
    after(() => lab.stop());

    const once = (caps: readonly string[]) =>
      netnsExec(lab.nodeNs, 'setpriv', ['--bounding-set', ['-all', ...caps.map((c) => `+${c}`)].join(','), '--inh-caps', '-all', process.execPath, AGENT_BIN, '--kubeconfig', lab.kubeconfig, '--config', configPath, '--configmap', '', '--once'], { reject: false });

    it('without any capability the sync fails: the bound is in force', async () => {
      const r = await once([]);
      assert.notEqual(r.exitCode, 0, r.stderr);
      // iptables' raw socket says "Permission denied", ipset's netlink request "Operation not permitted".
      assert.match(r.stderr, /Permission denied|Operation not permitted/);
      assert.doesNotMatch(await lab.save('nat'), /MCS-SERVICES/);
    });

    if (backend === 'legacy') {
      it('without NET_RAW, iptables-legacy cannot open its raw socket', async () => {
        const r = await once(['net_admin']);
        assert.notEqual(r.exitCode, 0, r.stderr);
        assert.match(r.stderr, /Permission denied/);
      });
    }

    it('with them, --once detects the backend and writes the rules', async () => {
      const r = await once(CAPABILITIES);
      assert.equal(r.exitCode, 0, r.stderr);
      const nat = await lab.save('nat');
      assert.match(nat, new RegExp(`-A ${CHAIN} .*--to-destination 10\\.2\\.0\\.10:8080`));
      assert.match(await lab.save('filter'), /:MCS-SERVICES/);
    });
  });
}
