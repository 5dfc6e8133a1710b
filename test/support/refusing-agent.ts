// The agent as bin/clusterset-proxy runs it, on the real iptables backend, but
// with every rule sending traffic to one endpoint made invalid on its way to
// iptables-restore: the real tool then refuses the whole payload and names the
// line, exactly as it refuses any rule the kernel cannot take. Data-plane tests
// run it in the node namespace to poison one service group.
//
//   node refusing-agent.js --kubeconfig FILE --config FILE --refuse-endpoint IP

import { parseArgs } from 'node:util';
import { Agent } from '../../src/agent.js';
import { loadConfigFile } from '../../src/config/load.js';
import { createIptablesBackend } from '../../src/iptables/exec-backend.js';
import { loadKubeConfig } from '../../src/kube/client.js';
import { createLogger } from '../../src/log.js';
import { stopSignal } from '../../src/stop-signals.js';
import { refusingEndpoint } from './refusing-backend.js';

const { values } = parseArgs({ options: { kubeconfig: { type: 'string' }, config: { type: 'string' }, 'refuse-endpoint': { type: 'string' } } });
const config = await loadConfigFile(values.config!);
const log = createLogger('debug');
const real = await createIptablesBackend({ mode: config.iptablesBackend, lockWaitSeconds: config.iptablesLockWait, log });
const agent = new Agent({ config, backend: refusingEndpoint(real, values['refuse-endpoint']!), kubeConfig: loadKubeConfig(values.kubeconfig), log, nodeName: 'node-a' });
void stopSignal.then(() => agent.stop()).then(() => process.exit(0));
await agent.start();
