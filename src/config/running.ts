import type { Config } from './schema.js';

export type ConfigSubscriber = (next: Config, previous: Config) => void;

/**
 * The config in force: one owner, read through `current`; components that
 * act on a change subscribe instead of keeping a copy. Subscribers run in
 * the order they subscribed, after the new config is in place.
 */
export class RunningConfig {
  private value: Config;
  private readonly subscribers: ConfigSubscriber[] = [];

  constructor(initial: Config) {
    this.value = initial;
  }

  get current(): Config {
    return this.value;
  }

  /** Calls `fn` on every later change; returns the unsubscribe. */
  subscribe(fn: ConfigSubscriber): () => void {
    this.subscribers.push(fn);
    return () => {
      const at = this.subscribers.indexOf(fn);
      if (at !== -1) this.subscribers.splice(at, 1);
    };
  }

  /** Puts `next` in force and tells every subscriber. */
  set(next: Config): void {
    const previous = this.value;
    this.value = next;
    for (const fn of [...this.subscribers]) fn(next, previous);
  }
}
