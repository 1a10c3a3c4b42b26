import type { WS } from '../conn';
import type { WsContext } from '../context';

/** SNAPSHOT_REQUEST → one SNAPSHOT_RESPONSE through the hub's catch-up path (ordering preserved). */
export function snapshotRequest(ctx: WsContext, ws: WS): void {
  ctx.hub.resync(ws, 'snapshot request', true);
}
