import { MessageType, type Envelope } from '@harmonyflow/protocol';
import { connOf, type WS } from '../conn';
import type { WsContext } from '../context';
import { corked, sendEnv } from '../io';

/** DEVICE_LIST (c→s) → the session's devices, cluster-wide. */
export function deviceList(ctx: WsContext, ws: WS, env: Envelope, now: number): void {
  const c = connOf(ws);
  ctx.presence.list(c.sessionId, now).then(
    (devices) => corked(ws, () => sendEnv(ws, { type: MessageType.DEVICE_LIST, session_id: c.sessionId, timestamp: Date.now(), correlation_id: env.correlation_id, payload: { devices } })),
    (err) => corked(ws, () => ctx.io.failed(ws, err, env.correlation_id)),
  );
}
