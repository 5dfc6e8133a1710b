// The Dataplane scenarios (test/support/dataplane-conformance.ts) through
// IpvsDataplane on the fake; dataplane-conformance.guest.ts runs them against
// the kernel inside UML.

import { FakeIpvs } from '../../src/ipvs/fake.js';
import { dataplaneConformance } from '../support/dataplane-conformance.js';
import { ipvsKernel } from './dataplane-kernel.js';

dataplaneConformance('fake IPVS', true, async () => ipvsKernel(new FakeIpvs()));
