import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

  readonly storeOps = new Histogram({
    name: 'hf_store_operation_duration_seconds',
    help: 'Session store operation duration',
    labelNames: ['op', 'outcome'] as const,
    buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [this.registry],
  });

  readonly wsConnections = new Gauge({
    name: 'hf_ws_connections',
    help: 'Open WebSocket connections on this node',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  readonly wsMessages = new Counter({
    name: 'hf_ws_messages_total',
    help: 'WebSocket frames received by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly wsErrors = new Counter({
    name: 'hf_ws_errors_total',
    help: 'ERROR frames sent, by code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly wsCloses = new Counter({
    name: 'hf_ws_closes_total',
    help: 'Connections closed by the server, by close code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });

  readonly fanout = new Counter({
    name: 'hf_fanout_frames_total',
    help: 'Frames delivered to local sockets, and deltas skipped for slow consumers',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly busLag = new Histogram({
    name: 'hf_bus_lag_seconds',
    help: 'Time from a state update commit to its arrival on this node',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
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

  readonly writes = new Counter({
    name: 'hf_store_writes_total',
    help: 'Committed state changes made through this node',
    labelNames: ['source', 'op'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'hf_' });
  }
}
