// The IPVS scenarios against the kernel over generic netlink. Needs a kernel
// with ip_vs loaded: run inside UML by test/uml/ipvs-kernel.test.ts (the file
// name keeps it out of the host's test glob).

import { NetlinkIpvs } from '../../src/ipvs/netlink-client.js';
import { ipvsConformance } from './conformance.js';

ipvsConformance(() => new NetlinkIpvs());
