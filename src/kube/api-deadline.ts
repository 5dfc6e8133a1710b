import { formatDuration } from '../config/duration.js';
import type { ApiFailure } from './api-failure.js';

/** A one-shot run gave up on the API server; the message names the server and the cause. */
export class ApiUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ApiUnavailableError';
  }
}

/**
 * Bounds how long a one-shot run (--once, --dry-run, offline explain) waits
 * for informers to list: it fails at once on an error no retry can fix, and
 * after `timeoutMs` on any other, with the last cause seen. Pass `onFailure`
 * to the informers (InformerOptions.onFailure).
 */
export class ApiDeadline {
  private last: ApiFailure | null = null;
  private fatal: ((err: Error) => void) | null = null;

  constructor(
    private readonly server: string,
    private readonly timeoutMs: number,
  ) {}

  readonly onFailure = (failure: ApiFailure): void => {
    this.last = failure;
    if (!failure.retryable) this.fatal?.(new ApiUnavailableError(`API server ${this.server}: ${failure.cause} (not retryable)`));
  };

  /** Resolves with `synced`, or rejects with an ApiUnavailableError; the caller stops the informers either way. */
  async wait<T>(what: string, synced: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const failed = new Promise<never>((_, reject) => {
      this.fatal = reject;
      if (this.last && !this.last.retryable) this.onFailure(this.last);
      timer = setTimeout(() => {
        const cause = this.last ? this.last.cause : 'no answer';
        reject(new ApiUnavailableError(`API server ${this.server}: ${what} not read within ${formatDuration(this.timeoutMs)} (apiTimeout): ${cause}`));
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([synced, failed]);
    } finally {
      clearTimeout(timer);
      this.fatal = null;
    }
  }
}
