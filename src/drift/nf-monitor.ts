// An in-process `nft monitor`: a NETLINK_NETFILTER socket joined to the
// nf_tables multicast group of the agent's network namespace. Every commit to
// any nf_tables table (iptables-nft included) arrives here as its objects and
// a closing NEWGEN. Reading costs nothing while nothing changes.

import { RawNetlinkSocket } from 'netlink';
import { decodeNfMessages, NETLINK_NETFILTER, NFNLGRP_NFTABLES, type NfEvent } from './nf-events.js';

export interface NfEventSource {
  start(): void;
  stop(): void;
}

/** What the monitor uses of the netlink package's RawNetlinkSocket, whose native callback emits these events. */
export interface MonitorSocket {
  on(event: 'message' | 'truncatedMessage', listener: (msg: Buffer) => void): unknown;
  on(event: 'error', listener: (err: NodeJS.ErrnoException) => void): unknown;
  addMembership(group: number): void;
  unref(): void;
  close(): void;
}

export interface NfMonitorHandlers {
  /** The events of one datagram, in the kernel's order. */
  readonly onEvents: (events: NfEvent[]) => void;
  /** Events were lost (the receive buffer overflowed during a burst) or the socket failed: the state is unknown. */
  readonly onLost: (reason: string) => void;
}

/**
 * Room for a burst: a rule event is about 150-300 bytes, so 8 MiB holds tens
 * of thousands of them while the event loop is busy. Past it the kernel drops
 * events and reports ENOBUFS, which onLost turns into one full check.
 */
const RECV_BUFFER = 8 * 1024 * 1024;

export class NfTablesMonitor implements NfEventSource {
  private socket: MonitorSocket | null = null;

  constructor(
    private readonly handlers: NfMonitorHandlers,
    private readonly open: () => MonitorSocket = () => new RawNetlinkSocket(NETLINK_NETFILTER, { recvBufferSize: RECV_BUFFER, sendBufferSize: 4096 }),
  ) {}

  start(): void {
    if (this.socket) return;
    const socket = this.open();
    socket.on('message', (msg) => this.guarded(() => this.handlers.onEvents(decodeNfMessages(msg))));
    socket.on('truncatedMessage', () => this.guarded(() => this.handlers.onLost('a notification was truncated')));
    socket.on('error', (err) => this.guarded(() => this.handlers.onLost(err.code === 'ENOBUFS' ? 'the receive buffer overflowed' : `${err.syscall ?? 'socket'}: ${err.code ?? err.message}`)));
    socket.addMembership(NFNLGRP_NFTABLES);
    // The agent's other work keeps the process alive; this socket alone must not.
    socket.unref();
    this.socket = socket;
  }

  /**
   * The socket calls these from native code, where a thrown exception
   * terminates the process: a failure becomes "events lost" (one full check).
   */
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
    this.socket?.close();
    this.socket = null;
  }
}
