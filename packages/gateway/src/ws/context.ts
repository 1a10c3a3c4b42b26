import type { TokenService } from '../auth/tokens';
import type { Config } from '../config';
import type { Hub } from '../hub';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { PresenceRegistry } from '../presence/types';
import type { SessionService } from '../sessions';
import type { Conn, WS } from './conn';
import type { SocketIO } from './io';
import type { Limits } from './limits';
import type { PresenceTracker } from './presenceTracker';

/** What every WebSocket message handler may use. */
export interface WsContext {
  readonly config: Config;
  /** This process's incarnation id (origin of its writes). */
  readonly instance: string;
  readonly tokens: TokenService;
  readonly sessions: SessionService;
  readonly presence: PresenceRegistry;
  readonly tracker: PresenceTracker;
  readonly hub: Hub;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Work in flight, so shutdown can wait for it. */
  readonly inflight: { count: number };
  readonly io: SocketIO;
  readonly limits: Limits;
  /** Processes one frame as if it had just arrived (frames held during authentication). */
  dispatch(ws: WS, message: ArrayBuffer | Uint8Array, isBinary: boolean): void;
  /** A connection joined its session (after AUTH_SUCCESS) or closed: for the node registry. */
  readonly connections: { up(c: Conn): void; down(c: Conn): void };
}
