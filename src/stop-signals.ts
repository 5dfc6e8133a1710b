// SIGTERM and SIGINT, caught from the moment this module is evaluated (main.ts
// imports it first), so that a signal during start-up stops the agent cleanly
// instead of killing it.
//
// The listeners stay installed (process.on, never once). execa's clean-up of
// child processes (signal-exit) listens for the same signals while a child
// runs, and re-raises a signal when it finds no listener but its own: with a
// once-listener gone after the first signal, a SIGTERM arriving while an
// iptables or conntrack process ran killed the agent half-way through
// stopping, and the running child with it.

export type StopSignal = 'SIGTERM' | 'SIGINT';

const SIGNALS: readonly StopSignal[] = ['SIGTERM', 'SIGINT'];

let received: StopSignal | undefined;
let resolveStop!: (signal: StopSignal) => void;

/** Resolves with the first stop signal received. */
export const stopSignal: Promise<StopSignal> = new Promise((resolve) => {
  resolveStop = resolve;
});

const onSignal = (signal: StopSignal): void => {
  received ??= signal;
  resolveStop(signal);
};
const listeners = new Map(SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const));
for (const [signal, listener] of listeners) process.on(signal, listener);

/** The first stop signal received so far, if any. */
export function stopSignalReceived(): StopSignal | undefined {
  return received;
}

/**
 * For runs that end by themselves (--once, --cleanup, --dry-run, explain): the
 * signals take their default action again, and one received meanwhile is
 * raised again now.
 */
export function releaseStopSignals(): void {
  for (const [signal, listener] of listeners) process.off(signal, listener);
  listeners.clear();
  if (received) process.kill(process.pid, received);
}
