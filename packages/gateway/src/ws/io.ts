import { CloseCode, codecFor, MessageType, SUBPROTOCOL_PROTO, type Envelope } from '@harmonyflow/protocol';
import type { Metrics } from '../metrics';
import { connOf, type WS } from './conn';
import { errorEnvelope, errorFromThrown } from './errors';
import type { Logger } from '../log';

/** Sends one encoded frame; text for JSON sockets, binary for protobuf ones. */
export function send(ws: WS, data: string | Uint8Array): void {
  ws.send(data, typeof data !== 'string');
}

/** Encodes an envelope for the socket's subprotocol and sends it (nothing once closed). */
export function sendEnv(ws: WS, env: Envelope): void {
  const c = connOf(ws);
  if (c.closed) return;
  send(ws, codecFor(c.binary ? SUBPROTOCOL_PROTO : null).encode(env));
}

/**
 * Runs socket writes that follow an await inside one uWS cork (one syscall for all of them), and
 * not at all once the socket closed: uWS throws on any access to a closed socket.
 */
export function corked(ws: WS, fn: () => void): void {
  if (!connOf(ws).closed) ws.cork(fn);
}

/** Closes the socket (nothing once closed), counted in hf_ws_closes_total by code. */
export function closeCounted(ws: WS, code: number, reason: string, metrics: Metrics): void {
  if (connOf(ws).closed) return;
  metrics.wsCloses.inc({ code: String(code) });
  ws.end(code, reason);
}

/** ERROR frames and closes of every handler, counted by code; other frames go out through sendEnv. */
export class SocketIO {
  constructor(private readonly metrics: Metrics, private readonly log: Logger) {}

  error(ws: WS, code: string, message: string, correlationId?: string, extra?: Record<string, unknown>): void {
    this.metrics.wsErrors.inc({ code });
    sendEnv(ws, errorEnvelope(code, message, correlationId, extra));
  }

  /** Any thrown value as an ERROR frame; unknown errors are logged and become `internal`. */
  failed(ws: WS, err: unknown, correlationId?: string): void {
    const { env, known } = errorFromThrown(err, correlationId);
    if (!known) this.log.error({ err }, 'unhandled error in WS handler');
    this.metrics.wsErrors.inc({ code: String((env.payload as { code: string }).code) });
    sendEnv(ws, env);
  }

  close(ws: WS, code: number, reason: string): void {
    closeCounted(ws, code, reason, this.metrics);
  }

  /** AUTH_FAILURE, then the close (4401 unless another code is given; SPEC §3). */
  authFailure(ws: WS, code: string, message: string, correlationId?: string, close: number = CloseCode.AUTH): void {
    sendEnv(ws, { type: MessageType.AUTH_FAILURE, timestamp: Date.now(), correlation_id: correlationId, payload: { code, message } });
    this.close(ws, close, code);
  }
}
