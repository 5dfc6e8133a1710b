import { Session } from 'node:inspector/promises';

/**
 * Hands the heap the agent grew while listing and planning everything back
 * to the system. Listing a large cluster decodes every object whole (about
 * 2 KB of JSON each) before trimming it, and the first full sync renders the
 * whole ruleset; V8 keeps the pages that took long after they are garbage
 * (at 10,000 Services, twice the live heap). The inspector's
 * HeapProfiler.collectGarbage is V8's low-memory collection: it compacts the
 * heap, shrinks the young generation and unmaps the free pages, which a plain
 * collection does not. The session is in process; nothing listens on a port.
 * Without an inspector (node built without it) nothing is released.
 */
export async function releaseHeap(): Promise<boolean> {
  let session: Session;
  try {
    session = new Session();
    session.connect();
  } catch {
    return false;
  }
  try {
    await session.post('HeapProfiler.collectGarbage');
    return true;
  } catch {
    return false;
  } finally {
    session.disconnect();
  }
}
