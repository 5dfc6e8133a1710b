// The IPVS scenarios against the fake; test/uml/ipvs-kernel.test.ts runs the
// same scenarios against the kernel.

import { FakeIpvs } from '../../src/ipvs/fake.js';
import { ipvsConformance } from './conformance.js';

ipvsConformance(() => new FakeIpvs());
