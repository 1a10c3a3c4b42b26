import { BusKind, CloseCode, MessageType, type ControlFrame, type Envelope } from '@harmonyflow/protocol';
import type { TemplatedApp } from 'uWebSockets.js';
import type { Hub } from '../hub';
import type { Conn } from './conn';
import { Encoded } from './frames';
import { TOPIC } from './topics';
import { closeCounted, send } from './io';
import type { Metrics } from '../metrics';

/**
 * Delivers non-state bus frames to this node's sockets: presence events to the session's other
 * devices, handoff notices to the named device, kicks, and broadcasts (via uWS topics, encoded
 * once per subprotocol).
 */
export function deliverControl(f: ControlFrame, hub: Hub, app: TemplatedApp, metrics: Metrics): void {
  const b = f.body;
  if (f.kind === BusKind.BROADCAST) {
    const sessionId = typeof b.session_id === 'string' ? b.session_id : null;
    const type = b.admin_update ? MessageType.ADMIN_UPDATE : MessageType.BROADCAST;
    const payload = b.admin_update ? (b.payload as Record<string, unknown>) : { message: b.message, type: b.type };
    const enc = new Encoded(() => ({ type, session_id: sessionId ?? undefined, timestamp: Date.now(), payload }));
    if (type === MessageType.ADMIN_UPDATE) {
      for (const binary of [false, true]) app.publish(TOPIC.admins(binary), enc.for(binary), binary);
      return;
    }
    if (sessionId) {
      for (const c of hub.connsOf(sessionId) ?? []) sendTo(c, enc);
    } else {
      for (const binary of [false, true]) app.publish(TOPIC.all(binary), enc.for(binary), binary);
      // Admins hear about broadcasts too (SPEC: ADMIN_UPDATE on broadcasts).
      const note = new Encoded(() => ({ type: MessageType.ADMIN_UPDATE, timestamp: Date.now(), payload: { event: 'broadcast', message: b.message, type: b.type } }));
      for (const binary of [false, true]) app.publish(TOPIC.admins(binary), note.for(binary), binary);
    }
    metrics.fanout.inc({ outcome: 'broadcast' });
    return;
  }
  const conns = hub.connsOf(f.sessionId);
  if (!conns) return;
  const env = (type: MessageType, payload: Record<string, unknown>): Envelope => ({ type, session_id: f.sessionId, timestamp: Date.now(), payload });
  switch (f.kind) {
    case BusKind.DEVICE_JOINED: {
      const device = b.device as { device_id?: string };
      const enc = new Encoded(() => env(MessageType.DEVICE_JOINED, { device }));
      for (const c of conns) if (c.deviceId !== device.device_id) sendTo(c, enc);
      return;
    }
    case BusKind.DEVICE_LEFT: {
      const enc = new Encoded(() => env(MessageType.DEVICE_LEFT, { device_id: b.device_id, reason: b.reason }));
      for (const c of conns) if (c.deviceId !== b.device_id) sendTo(c, enc);
      return;
    }
    case BusKind.KICK:
      for (const c of [...conns]) {
        if (c.deviceId !== b.device_id || !c.ws) continue;
        // The close takes its count back (a no-op once the kicker removed the device's record).
        c.leaveReason = 'kicked';
        closeCounted(c.ws, CloseCode.KICKED, 'kicked', metrics);
      }
      return;
    case BusKind.HANDOFF_REQUESTED: {
      const enc = new Encoded(() => env(MessageType.HANDOFF_REQUESTED, { token: b.token, source_device: b.source_device, expires_at: b.expires_at }));
      for (const c of conns) if (c.deviceId === b.target_device) sendTo(c, enc);
      return;
    }
    case BusKind.HANDOFF_COMPLETED: {
      const enc = new Encoded(() => env(MessageType.HANDOFF_COMPLETED, { target_device: b.target_device }));
      for (const c of conns) {
        if (c.deviceId !== b.source_device) continue;
        c.leaveReason = 'handoff';
        sendTo(c, enc);
      }
      return;
    }
    default:
      return;
  }
}

function sendTo(c: Conn, enc: Encoded): void {
  if (c.closed || !c.authed || !c.ws) return;
  send(c.ws, enc.for(c.binary));
}
