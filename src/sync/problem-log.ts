import type { Logger } from '../log.js';
import { objectText, problemText, type Problem } from '../model/records.js';

const GROUP_SCOPE = 'group ';

/**
 * Reports each problem once: objects are converted and groups rebuilt on
 * every change, and a log line per rebuild would drown the one that matters.
 * A scope is an object (problems found converting it) or a group (problems
 * found assembling it); a problem that disappears and comes back is
 * reported again.
 */
export class ProblemLog {
  private readonly known = new Map<string, Set<string>>();
  /** Receives each problem when it is first reported (Kubernetes Events); must not throw. */
  onNew: ((problem: Problem, scope: 'object' | 'group') => void) | null = null;

  constructor(private readonly log: Logger) {}

  report(scope: string, problems: readonly Problem[]): void {
    const before = this.known.get(scope);
    const now = new Set<string>();
    for (const p of problems) {
      const line = problemText(p);
      now.add(line);
      if (!before?.has(line)) {
        this.log.warn({ object: objectText(p.object) }, line);
        this.onNew?.(p, scope.startsWith(GROUP_SCOPE) ? 'group' : 'object');
      }
    }
    if (now.size > 0) this.known.set(scope, now);
    else this.known.delete(scope);
  }

  reportGroup(key: string, problems: readonly Problem[]): void {
    this.report(`${GROUP_SCOPE}${key}`, problems);
  }

  clear(scope: string): void {
    this.known.delete(scope);
  }

  /** Problems currently standing, for explain and tests. */
  current(): string[] {
    return [...this.known.values()].flatMap((s) => [...s]);
  }
}
