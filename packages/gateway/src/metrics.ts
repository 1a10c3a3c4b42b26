import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram, type CounterSeries, type HistogramSeries } from './hotMetrics';
import { redisConnectionStates } from './store/redisClient';
import type { MutationResult, StateOp } from './store/types';
import { uwsBuild, uwsIsNative } from './uwsRuntime';

// require, not a file read: node.ts requires the same file, so this is its cached copy.
const PACKAGE_VERSION: string = (require('../package.json') as { version: string }).version;

/**
 * prom-client's default gauges that end in `_total`, which Prometheus reserves for counters
 * (`promtool check metrics` rejects them). Each is the sum of the `{type}`-labelled gauge of the
 * same name without the suffix, e.g. `sum(hf_nodejs_active_handles)`, so nothing is lost.
 */
const NON_COUNTER_TOTALS = ['hf_nodejs_active_handles_total', 'hf_nodejs_active_requests_total', 'hf_nodejs_active_resources_total'];

const BUS_LAG_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1];

export type MutateOutcome = MutationResult['status'] | 'error';
export type WriteSource = 'http' | 'ws';

/** Every metric of a node, in one registry. Labels are bounded: never a session or user id. */
export class Metrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'hf_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly storeOps = new HotHistogram('hf_store_operation_duration_seconds', 'Session store operation duration',
    ['op', 'outcome'], [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], this.registry);

  readonly wsConnections = new Gauge({
    name: 'hf_ws_connections',
    help: 'Open WebSocket connections on this node',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  readonly wsMessages = new HotCounter('hf_ws_messages_total', 'WebSocket frames received by type', ['type'], this.registry);

  readonly wsErrors = new Counter({
    name: 'hf_ws_errors_total',
    help: 'ERROR frames sent, by code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  /** How far behind the store is (SessionStore.backlogMs), read at each scrape; set by the node. */
  storeBacklogMs: () => number = () => 0;

  readonly storeBacklog = new Gauge({
    name: 'hf_store_backlog_seconds',
    help: 'How long the oldest command this node sent to the session store has been waiting for its answer (past STORE_BACKLOG_LIMIT_MS, writes are refused)',
    registers: [this.registry],
    collect: () => {
      this.storeBacklog.set(this.storeBacklogMs() / 1000);
    },
  });

  readonly writesShed = new Counter({
    name: 'hf_writes_shed_total',
    help: 'State changes refused unapplied (store_unavailable) because the store was further behind than STORE_BACKLOG_LIMIT_MS, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  readonly wsCloses = new Counter({
    name: 'hf_ws_closes_total',
    help: 'Connections closed by the server, by close code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly fanout = new HotCounter('hf_fanout_frames_total', 'Frames delivered to local sockets, and deltas skipped for slow consumers',
    ['outcome'], this.registry);

  readonly busLag = new HotHistogram('hf_bus_lag_seconds', 'Time from a state update commit to its arrival on this node',
    [], BUS_LAG_BUCKETS, this.registry);

  readonly busCanaryRtt = new Histogram({
    name: 'hf_bus_canary_rtt_seconds',
    help: 'Round trip of the bus canary: a frame this node publishes to itself, through the same kind of channel sessions use, back to it',
    buckets: BUS_LAG_BUCKETS,
    registers: [this.registry],
  });

  readonly busSubscriptions = new Gauge({
    name: 'hf_bus_subscribed_sessions',
    help: 'Session channels this node is subscribed to',
    registers: [this.registry],
  });

  readonly localSessions = new Gauge({
    name: 'hf_hub_sessions',
    help: 'Sessions with at least one socket on this node',
    registers: [this.registry],
  });

  readonly writes = new HotCounter('hf_store_writes_total', 'Committed state changes made through this node', ['source', 'op'], this.registry);

  /**
   * Constant 1; the labels say what runs. `uws_native` is "true" on every node that started: start-up
   * refuses uWS's pure-JS fallback (uwsRuntime.ts). `uws_build` names the uWS package in use.
   */
  readonly buildInfo = new Gauge({
    name: 'hf_build_info',
    help: 'Build and runtime of this node: service version, Node.js version, uWebSockets.js build and whether it is native',
    labelNames: ['version', 'node_version', 'uws_native', 'uws_build'] as const,
    registers: [this.registry],
  });

  /**
   * 1 while every Redis connection of the role (`command`, `subscriber`) is ready, 0 while one is
   * down (reconnecting). No series at all with the embedded store (no Redis configured).
   */
  readonly redisConnected = new Gauge({
    name: 'hf_redis_connected',
    help: 'Whether the Redis connections of this node are ready (1) or down (0), by role; absent with the embedded store',
    labelNames: ['role'] as const,
    registers: [this.registry],
    collect() {
      this.reset();
      for (const [role, up] of redisConnectionStates()) this.set({ role }, up ? 1 : 0);
    },
  });

  /** Series of the per-update path, resolved once (hotMetrics.ts). */
  readonly hot = {
    delivered: this.fanout.labels('delivered'),
    skippedSlow: this.fanout.labels('skipped_slow'),
    resync: this.fanout.labels('resync'),
    busLag: this.busLag.labels(),
    /** By message type number (0..18). */
    messages: [] as CounterSeries[],
    /** Small fixed label sets, each series resolved on first use (never scraped unused). */
    mutate: {} as Partial<Record<MutateOutcome, HistogramSeries>>,
    writes: { http: {}, ws: {} } as Record<WriteSource, Partial<Record<StateOp['op'], CounterSeries>>>,
  };

  /** The wsMessages child of a message type. */
  message(type: number) {
    return (this.hot.messages[type] ??= this.wsMessages.labels(String(type)));
  }

  /** The storeOps child of a mutate outcome. */
  mutateDuration(outcome: MutateOutcome): HistogramSeries {
    return (this.hot.mutate[outcome] ??= this.storeOps.labels('mutate', outcome));
  }

  /** The writes child of a (source, op) pair. */
  write(source: WriteSource, op: StateOp['op']): CounterSeries {
    return (this.hot.writes[source][op] ??= this.writes.labels(source, op));
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'hf_' });
    for (const name of NON_COUNTER_TOTALS) this.registry.removeSingleMetric(name);
    this.buildInfo.set({ version: PACKAGE_VERSION, node_version: process.version, uws_native: String(uwsIsNative), uws_build: uwsBuild?.name ?? 'none' }, 1);
  }
}
