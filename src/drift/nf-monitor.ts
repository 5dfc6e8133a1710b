// An in-process `nft monitor`: a NETLINK_NETFILTER socket joined to the
// nf_tables multicast group of the agent's network namespace. Every commit to
// any nf_tables table (iptables-nft included) arrives here as its objects and
// a closing NEWGEN. Reading costs nothing while nothing changes.

import { loadAddon } from '../nftables/native.js';
import { decodeNfMessages, NFNLGRP_NFTABLES, type NfEvent } from './nf-events.js';

export interface NfEventSource {
  start(): void;
  stop(): void;
}

/**
 * What a monitor socket reports, from the event loop: the datagrams of one
 * wake in the kernel's order; notifications dropped (ENOBUFS: the receive
 * buffer overflowed) or truncated (EMSGSIZE); or a failure that closed it.
 */
export type MonitorReceiver = (kind: 'datagrams' | 'lost' | 'failed', payload: Buffer[] | string) => void;

export interface MonitorSocket {
  unref(): void;
  close(): void;
}

export type OpenMonitorSocket = (group: number, receive: MonitorReceiver) => MonitorSocket;

export interface NfMonitorHandlers {
  /** The events of one datagram, in the kernel's order. */
  readonly onEvents: (events: NfEvent[]) => void;
  /** Events were lost (the receive buffer overflowed during a burst) or the socket failed: the state is unknown. */
  readonly onLost: (reason: string) => void;
}

/**
 * Room for a burst: a notification takes about 1 KiB of the buffer, so 16 MiB
 * holds a kube-proxy rewrite of a few thousand services while the event loop
 * is busy. Past it the kernel drops events and says so, which becomes one
 * check of our jumps.
 */
const RECV_BUFFER = 16 * 1024 * 1024;
/** A failed socket is opened again after this long (the full sync covers the gap). */
const REOPEN_MS = 1000;

/** The nftables addon's monitor (native/nftables/nf_monitor.c), which survives overflows instead of aborting. */
export const openNativeMonitor: OpenMonitorSocket = (group, receive) => {
  const addon = loadAddon();
  const handle = addon.monitorOpen(group, RECV_BUFFER, receive);
  return { unref: () => addon.monitorUnref(handle), close: () => addon.monitorClose(handle) };
};

const LOST_REASONS: Record<string, string> = { ENOBUFS: 'the receive buffer overflowed', EMSGSIZE: 'a notification was truncated' };

export class NfTablesMonitor implements NfEventSource {
  private socket: MonitorSocket | null = null;
  private running = false;
  private reopening: NodeJS.Timeout | null = null;

  constructor(
    private readonly handlers: NfMonitorHandlers,
    private readonly open: OpenMonitorSocket = openNativeMonitor,
  ) {}

  /** Throws when the socket cannot be opened (no addon, no permission): the caller decides what watches instead. */
  start(): void {
    if (this.running) return;
    this.connect();
    this.running = true;
  }

  private connect(): void {
    // The native callback only queues: decoding and judging run from the event loop, outside it.
    const socket = this.open(NFNLGRP_NFTABLES, (kind, payload) => {
      if (kind === 'datagrams') {
        for (const msg of payload as Buffer[]) this.enqueue(() => this.handlers.onEvents(decodeNfMessages(msg)));
      } else if (kind === 'lost') {
        this.enqueue(() => this.handlers.onLost(LOST_REASONS[payload as string] ?? `notifications lost (${String(payload)})`));
      } else {
        this.socket = null;
        this.enqueue(() => this.handlers.onLost(`the monitor socket failed (${String(payload)}); opening it again`));
        this.reopenLater();
      }
    });
    // The agent's other work keeps the process alive; this socket alone must not.
    socket.unref();
    this.socket = socket;
  }

  private reopenLater(): void {
    if (this.reopening) return;
    this.reopening = setTimeout(() => {
      this.reopening = null;
      if (!this.running || this.socket) return;
      try {
        this.connect();
      } catch (err) {
        this.handlers.onLost(`the monitor socket could not be opened again (${(err as Error).message})`);
        this.reopenLater();
      }
    }, REOPEN_MS);
    this.reopening.unref();
  }

  private queue: (() => void)[] = [];
  private draining: NodeJS.Immediate | null = null;

  /**
   * The socket's native callback runs the listeners (and, as it returns, the
   * ticks they queued); anything thrown there terminates the process. So a
   * listener only queues its work, which runs in the next turn of the event
   * loop, in order and guarded.
   */
  private enqueue(work: () => void): void {
    this.queue.push(work);
    this.draining ??= setImmediate(() => this.drain());
  }

  /** Runs what the socket queued, in order. */
  private drain(): void {
    this.draining = null;
    const work = this.queue;
    this.queue = [];
    for (const w of work) this.guarded(w);
  }

  /** A failure while handling a notification becomes "events lost" (one check of our jumps). */
  private guarded(handle: () => void): void {
    try {
      handle();
    } catch (err) {
      try {
        this.handlers.onLost(`handling a notification failed: ${(err as Error).message}`);
      } catch {
        // Nothing may reach native code; the next full sync checks everything.
      }
    }
  }

  stop(): void {
    this.running = false;
    this.socket?.close();
    this.socket = null;
    if (this.reopening) clearTimeout(this.reopening);
    this.reopening = null;
    if (this.draining) clearImmediate(this.draining);
    this.draining = null;
    this.queue = [];
  }
}
