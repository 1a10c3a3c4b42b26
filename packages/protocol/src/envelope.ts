import { MessageType, StateOperation, DeviceLeftReason } from './messageTypes';

/** JSON value as carried in session state. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/**
 * The canonical in-memory message: exactly the JSON wire form. The protobuf codec maps this
 * shape to and from `harmonyflow.v1.Envelope`.
 */
export interface Envelope<P = Record<string, unknown>> {
  type: MessageType;
  session_id?: string;
  user_id?: string;
  device_id?: string;
  /** Unix milliseconds. */
  timestamp: number;
  payload: P;
  correlation_id?: string;
}

export interface DeviceInfo {
  device_id: string;
  device_type?: string;
  device_name?: string;
  os_version?: string;
  app_version?: string;
  status: 'online' | 'offline';
  node_id?: string;
  connected_at?: string;
  last_seen?: string;
  connections?: number;
}

export interface HeartbeatPayload { client_time?: number }
export interface HeartbeatAckPayload { client_time?: number; server_time: number }
/** `epoch` names the session's incarnation (SPEC §9): in a new epoch, versions start again. */
export interface SnapshotResponsePayload { session_id: string; version: number; state_data: JsonObject; updated_at: string; epoch: string }
/** `mutation_id`: positive, strictly increasing per (session, device); applied at most once (SPEC §10). */
export interface StateUpdateRequestPayload { key: string; value?: JsonValue; operation: 'SET' | 'DELETE' | 'INCREMENT'; base_version?: number; mutation_id?: number }
export interface StateUpdatePayload {
  key?: string;
  value?: JsonValue;
  operation: StateOperation;
  delta?: number;
  changes?: JsonObject;
  deleted_keys?: string[];
  version: number;
  device_id?: string;
}
export interface ErrorPayload { code: string; message: string; correlation_id?: string; current_version?: number; conflicting_keys?: string[] }
export interface AuthPayload {
  token: string;
  device_id: string;
  device_type?: string;
  device_name?: string;
  os_version?: string;
  app_version?: string;
  session_id?: string;
  last_version?: number;
  /** The epoch `last_version` belongs to: updates are replayed only within the same epoch. */
  last_epoch?: string;
}
export interface AuthSuccessPayload {
  session_id: string;
  user_id: string;
  device_id: string;
  node_id: string;
  version: number;
  devices: DeviceInfo[];
  heartbeat_interval_ms: number;
  resumed: boolean;
  epoch: string;
  /** Highest mutation_id the server has processed for this device in this session (0 if none). */
  last_mutation_id: number;
  /** Largest frame the server accepts (MAX_MESSAGE_BYTES). */
  max_message_bytes: number;
}
export interface AuthFailurePayload { code: string; message: string }
export interface DeviceJoinedPayload { device: DeviceInfo }
export interface DeviceLeftPayload { device_id: string; reason: DeviceLeftReason }
export interface DeviceListPayload { devices?: DeviceInfo[] }
export interface BroadcastPayload { message: string; type: string }
export interface AdminUpdatePayload { [key: string]: unknown }
/** `duplicate`: the write had been processed before and was not applied again; `version` is then the current one. */
export interface StateUpdateAckPayload { correlation_id?: string; version: number; value?: JsonValue; mutation_id?: number; duplicate?: boolean }
export interface HandoffRequestedPayload { token: string; source_device: string; expires_at?: string }
export interface HandoffCompletedPayload { target_device: string }
export interface ReconnectPayload { retry_after_ms: number }
