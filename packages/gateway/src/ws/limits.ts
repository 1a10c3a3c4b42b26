import { CloseCode, ErrorCode } from '@harmonyflow/protocol';
import type { Config } from '../config';
import { connOf, type Conn, type WS } from './conn';
import type { SocketIO } from './io';

/** Invalid frames tolerated (net of good ones) before a connection is closed with 4400. */
const STRIKES_BEFORE_CLOSE = 10;
/** Frames held while the first authentication is in flight; more is abuse. */
const MAX_HELD_FRAMES = 64;

/**
 * Per-connection limits (SPEC §5): frame size (ERROR payload_too_large, close 1009), a token
 * bucket (ERROR rate_limited, close 4429 when ignored) and strikes for invalid frames (ERROR, the
 * connection stays usable, close 4400 on repeated abuse). State lives in Conn: no per-socket timers.
 */
export class Limits {
  constructor(private readonly config: Config, private readonly io: SocketIO) {}

  /** Whether a frame of `bytes` may be processed now; answers and closes when not. */
  admit(ws: WS, c: Conn, bytes: number, now: number): boolean {
    const max = this.config.maxMessageBytes;
    if (bytes > max) {
      this.io.error(ws, ErrorCode.PAYLOAD_TOO_LARGE, `frame exceeds ${max} bytes`);
      this.io.close(ws, CloseCode.TOO_BIG, 'message too big');
      return false;
    }
    if (this.takeToken(c, now)) return true;
    c.dropped++;
    if (now - c.limitedAt >= 1000) {
      c.limitedAt = now;
      this.io.error(ws, ErrorCode.RATE_LIMITED, 'too many messages; slow down');
    }
    if (c.dropped > this.config.rateLimit.burst) this.io.close(ws, CloseCode.RATE_LIMITED, 'rate limited');
    return false;
  }

  private takeToken(c: Conn, now: number): boolean {
    const { perSecond, burst } = this.config.rateLimit;
    c.bucket = Math.min(burst, c.bucket + ((now - c.bucketAt) * perSecond) / 1000);
    c.bucketAt = now;
    if (c.bucket >= 1) {
      c.bucket -= 1;
      c.dropped = 0;
      return true;
    }
    return false;
  }

  /** A good frame pays back one strike. */
  good(c: Conn): void {
    if (c.strikes > 0) c.strikes--;
  }

  /** A bad frame: ERROR and keep the connection, until repeated abuse closes it with 4400. */
  strike(ws: WS, code: string, message: string, correlationId?: string): void {
    const c = connOf(ws);
    c.strikes += 2;
    this.io.error(ws, code, message, correlationId);
    if (c.strikes >= STRIKES_BEFORE_CLOSE * 2) this.io.close(ws, CloseCode.PROTOCOL_ABUSE, 'too many invalid messages');
  }

  /** Holds a frame that arrived while the first AUTH is in flight; closes the socket past the cap. */
  hold(ws: WS, c: Conn, message: ArrayBuffer, isBinary: boolean): void {
    c.held ??= [];
    if (c.held.length >= MAX_HELD_FRAMES) {
      this.io.close(ws, CloseCode.PROTOCOL_ABUSE, 'too many frames before authentication');
      return;
    }
    c.held.push({ data: Buffer.from(new Uint8Array(message)), isBinary });
  }
}
