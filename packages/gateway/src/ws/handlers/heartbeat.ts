import { MessageType, type Envelope } from '@harmonyflow/protocol';
import { connOf, type WS } from '../conn';
import { sendEnv } from '../io';

/** HEARTBEAT → HEARTBEAT_ACK echoing the client's clock (traffic itself keeps presence alive). */
export function heartbeat(ws: WS, env: Envelope, now: number): void {
  const ct = (env.payload as { client_time?: unknown }).client_time;
  sendEnv(ws, {
    type: MessageType.HEARTBEAT_ACK, session_id: connOf(ws).sessionId, timestamp: now, correlation_id: env.correlation_id,
    payload: { client_time: typeof ct === 'number' ? ct : undefined, server_time: now },
  });
}
