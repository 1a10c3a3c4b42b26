import { randomBytes } from 'node:crypto';

/**
 * A node incarnation: `NODE_ID` names a node, and every start of a process is a new incarnation
 * with its own random id (SPEC §9). Everything another process could otherwise confuse — connection
 * ids in bus frames and the log, presence counts, registry entries — is keyed by the instance id
 * `<NODE_ID>/<incarnation>`, never by `NODE_ID` alone.
 */
export function newInstanceId(nodeId: string): string {
  return `${nodeId}/${randomBytes(8).toString('hex')}`;
}

/** The `NODE_ID` part of an instance id (NODE_ID cannot contain "/"). */
export function nodeIdOf(instance: string): string {
  const i = instance.lastIndexOf('/');
  return i < 0 ? instance : instance.slice(0, i);
}

/** A connection's id cluster-wide: its instance and its id on that process. */
export function connectionId(instance: string, localId: number): string {
  return `${instance}/${localId}`;
}
