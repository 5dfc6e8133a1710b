import type { Dataplane } from '../sync/dataplane.js';
import { familyDataplanes } from '../sync/family-dataplanes.js';
import type { IptablesBackend } from './backend.js';
import { IptablesDataplane } from './dataplane.js';

/** iptables mode: one data plane per family the node serves (iptables over `backend`, ip6tables over `backend6`). */
export function iptablesDataplanes(backend: IptablesBackend, backend6: IptablesBackend | null | undefined): Dataplane {
  return familyDataplanes([new IptablesDataplane(backend), ...(backend6 ? [new IptablesDataplane(backend6)] : [])]);
}
