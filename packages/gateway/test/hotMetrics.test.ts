import { Counter, Histogram, Registry } from 'prom-client';
import { BusKind } from '@harmonyflow/protocol';
import { BusCanary } from '../src/bus/canary';
import type { Bus } from '../src/bus/types';
import { HotCounter, HotHistogram } from '../src/hotMetrics';
import { Metrics } from '../src/metrics';

// The per-update metrics must scrape exactly as the prom-client metrics they replace.

const BOUNDS = [0.0005, 0.001, 0.01, 0.5];
const samples = [0.0001, 0.0005, 0.0007, 0.002, 0.3, 0.5, 2, 7, Number.NaN];

async function text(r: Registry): Promise<string> {
  return r.metrics();
}

describe('hot metrics scrape like prom-client', () => {
  it('histogram with labels, observed through series, objects and timers', async () => {
    const a = new Registry();
    const b = new Registry();
    const reference = new Histogram({ name: 'x_seconds', help: 'h', labelNames: ['op', 'outcome'] as const, buckets: BOUNDS, registers: [a] });
    const hot = new HotHistogram('x_seconds', 'h', ['op', 'outcome'], BOUNDS, b);
    for (const v of samples) {
      if (Number.isFinite(v)) reference.observe({ op: 'mutate', outcome: 'ok' }, v);
      hot.labels('mutate', 'ok').observe(v);
      if (Number.isFinite(v)) reference.labels('get', 'ok').observe(v);
      hot.observe({ op: 'get', outcome: 'ok' }, v);
    }
    expect(await text(b)).toBe(await text(a));
    const end = hot.startTimer({ op: 'get' });
    end({ outcome: 'error' });
    expect(await text(b)).toContain('x_seconds_count{op="get",outcome="error"} 1');
  });

  it('histogram without labels shows its zero series before any observation', async () => {
    const a = new Registry();
    const b = new Registry();
    const reference = new Histogram({ name: 'lag_seconds', help: 'h', buckets: BOUNDS, registers: [a] });
    const hot = new HotHistogram('lag_seconds', 'h', [], BOUNDS, b);
    expect(await text(b)).toBe(await text(a));
    reference.observe(0.002);
    hot.observe(0.002);
    expect(await text(b)).toBe(await text(a));
  });

  it('counters, with and without labels', async () => {
    const a = new Registry();
    const b = new Registry();
    const r1 = new Counter({ name: 'frames_total', help: 'c', labelNames: ['outcome'] as const, registers: [a] });
    const r2 = new Counter({ name: 'plain_total', help: 'c', registers: [a] });
    const h1 = new HotCounter('frames_total', 'c', ['outcome'], b);
    const h2 = new HotCounter('plain_total', 'c', [], b);
    expect(await text(b)).toBe(await text(a));
    r1.labels('delivered').inc();
    r1.inc({ outcome: 'delivered' }, 2);
    r1.inc({ outcome: 'broadcast' });
    r2.inc(5);
    h1.labels('delivered').inc();
    h1.inc({ outcome: 'delivered' }, 2);
    h1.inc({ outcome: 'broadcast' });
    h2.labels().inc(5);
    expect(await text(b)).toBe(await text(a));
  });
});

describe('the node\'s per-update series', () => {
  it('write(source, op) and mutateDuration(outcome) are the labelled series of writes and storeOps, and only the ones used are scraped', async () => {
    const m = new Metrics();
    expect(m.write('ws', 'set')).toBe(m.write('ws', 'set'));
    expect(m.write('ws', 'set')).toBe(m.writes.labels('ws', 'set'));
    expect(m.write('http', 'set')).not.toBe(m.write('ws', 'set'));
    expect(m.mutateDuration('ok')).toBe(m.storeOps.labels('mutate', 'ok'));
    m.write('ws', 'incr').inc();
    m.write('ws', 'incr').inc();
    m.mutateDuration('conflict').observe(0.001);
    const text = await m.registry.metrics();
    expect(text).toContain('hf_store_writes_total{source="ws",op="incr"} 2');
    expect(text).toContain('hf_store_writes_total{source="ws",op="set"} 0');
    expect(text).not.toContain('op="delete"');
    expect(text).toContain('hf_store_operation_duration_seconds_count{op="mutate",outcome="conflict"} 1');
  });

  it('bus lag has its series resolved for the delivery path', async () => {
    const m = new Metrics();
    expect(m.hot.busLag).toBe(m.busLag.labels());
    m.hot.busLag.observe(0.002);
    expect(await m.registry.metrics()).toContain('hf_bus_lag_seconds_count 1');
  });

  it('the bus canary\'s round trip is its own metric, not commit-to-arrival bus lag', async () => {
    const m = new Metrics();
    const canary = new BusCanary({} as Bus, 'node-a', 1000, m);
    canary.heard({ kind: BusKind.CANARY, sessionId: 'canary-node-a', originNode: 'node-a', body: { sent_at: Date.now() - 3 } });
    canary.heard({ kind: BusKind.CANARY, sessionId: 'canary-node-b', originNode: 'node-b', body: { sent_at: Date.now() - 3 } });
    const text = await m.registry.metrics();
    expect(text).toContain('hf_bus_lag_seconds_count 0');
    expect(text).toContain('hf_bus_canary_rtt_seconds_count 1');
    expect(text).toMatch(/^# HELP hf_bus_canary_rtt_seconds .*canary/m);
  });
});
