// The route half in the service data planes' vocabulary (src/sync/dataplane.ts):
// plan gives the desired state as values, observe reads the owned objects
// back, diff turns the two into one transaction, apply hands it to the thin
// executor, cleanup removes what is owned. Routes are one plan per node, not
// per service group, so there is no diffGroup, merge or adopt: every sync
// observes afresh and diffs the whole plan, which also takes over what a
// previous run left.

import type { Config } from '../config/schema.js';
import { diffRoutes, type ObservedState, type RouteOp } from './diff.js';
import type { NodeRecord } from './gateway.js';
import type { RouteExecutor } from './netlink-executor.js';
import { EMPTY_ROUTE_PLAN, ownership, planRoutes, type Ownership, type PlanResult, type RouteConfig, type RoutePlan } from './plan.js';

/** The operations that bring the kernel to a plan, in the order they must run. */
export interface RouteTransaction {
  readonly ops: readonly RouteOp[];
}

export class RoutesDataplane {
  /** Fixed at start-up: the owned table, rule priority and interface. */
  private readonly own: Ownership;

  constructor(private readonly executor: RouteExecutor, config: Pick<Config, 'gateway'>) {
    this.own = ownership(config);
  }

  /** This node's desired routes, with the gateway choice and network analysis they came from. */
  plan(config: RouteConfig, nodeName: string, nodes: Iterable<NodeRecord>): PlanResult {
    return planRoutes(config, nodeName, nodes);
  }

  /** The owned objects and the plan's sysctls as the kernel holds them. */
  observe(desired: RoutePlan): Promise<ObservedState> {
    return this.executor.read(this.own, desired.sysctls.map((s) => s.path));
  }

  diff(last: ObservedState, desired: RoutePlan): RouteTransaction {
    return { ops: diffRoutes(desired, last) };
  }

  /** Runs the operations in order, stopping at the first the kernel refuses; returns how many there were. */
  async apply(tx: RouteTransaction): Promise<number> {
    if (tx.ops.length > 0) await this.executor.apply(tx.ops, this.own);
    return tx.ops.length;
  }

  /** Removes the owned rules, routes and interface; returns the number of operations. */
  async cleanup(): Promise<number> {
    return this.apply(this.diff(await this.observe(EMPTY_ROUTE_PLAN), EMPTY_ROUTE_PLAN));
  }
}
