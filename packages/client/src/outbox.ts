import type { JsonValue } from '@harmonyflow/protocol/lite';
import { SessionError, ClientErrorCode } from './errors';
import type { StorageLike } from './storage';

export type WriteOperation = 'SET' | 'DELETE' | 'INCREMENT';

/** A queued write as stored (short keys: a phone may hold thousands). */
interface StoredWrite {
  /** mutation_id; 0 while the session is not known yet. */
  m: number;
  /** correlation_id. */
  c: string;
  k: string;
  op: WriteOperation;
  v?: JsonValue;
  /** base_version. */
  b?: number;
  /** Id of a write queued before the session was known (see {@link Outbox.bind}). */
  u?: string;
}

interface OutboxDoc {
  v: 1;
  /** Highest mutation_id handed out for this (session, device). */
  next: number;
  /**
   * True once a connection has been readied to send this document's writes (its counter compared
   * with the server's `last_mutation_id`, when the server sent one). Until then no write of it
   * can have been sent, so ids that the server has already seen (storage wiped while the server
   * kept its high-water mark) may be renumbered instead of dropped.
   */
  synced: boolean;
  pending: StoredWrite[];
  /** Ids (`u`) of session-less writes moved in here whose old copy may not be deleted yet. */
  adopted?: string[];
}

/** A write waiting for its ACK. */
export interface PendingWrite extends StoredWrite {
  /** Saved in storage: only then may it be sent. */
  durable: boolean;
  /** Resume mark when it was last sent: its version, whenever it commits, is above this. */
  sentAt?: number;
  /** The promise of the `set`/`delete`/`increment` call, when made by this client instance. */
  settle?: { resolve(r: unknown): void; reject(e: Error): void };
}

const UNBOUND = '~';
/** Tries of a `getItem` that throws before a read gives up for now; pauses between them grow 50, 200, 800 ms. */
const READ_ATTEMPTS = 4;
const READ_RETRY_MS = 50;

/**
 * The persistent queue of one device's unacknowledged writes to one session, and its
 * mutation_id counter (SPEC §10). Ids strictly increase in queue order; every change is saved
 * through the storage adapter, one save at a time, so the stored document only moves forward.
 *
 * Writes made before the session is known (no `sessionId` option, not connected yet) wait in a
 * session-less document without ids; {@link bind} moves them into the session's document.
 */
export class Outbox {
  entries: PendingWrite[] = [];
  sessionId: string | null;
  private next = 0;
  private synced = false;
  private adopted: string[] = [];
  private chain: Promise<unknown> = Promise.resolve();
  private queued: Promise<void> | null = null;
  private loading: Promise<void> | null = null;

  constructor(
    private readonly storage: StorageLike,
    private readonly prefix: string,
    private readonly deviceId: string,
    sessionId: string | undefined,
    private readonly onError: (err: SessionError) => void,
  ) {
    this.sessionId = sessionId ?? null;
  }

  /**
   * Brings the stored queue into memory; call (and wait) before anything is added. Settles at
   * once after the first success. When storage cannot be read it rejects with `storage_failed`
   * (reported through `onError` too) and the next call reads again: an unread document must
   * not be taken for an empty one, or the next save would overwrite its writes and id counter.
   */
  load(): Promise<void> {
    this.loading ??= this.read(this.key(this.sessionId)).then(
      (doc) => {
        if (doc) this.adopt(doc);
      },
      (err: SessionError) => {
        this.loading = null;
        this.onError(err);
        throw err;
      },
    );
    return this.loading;
  }

  /** Storage key of the document for a session (or the session-less one). */
  key(sessionId: string | null): string {
    return `${this.prefix}:${encodeURIComponent(this.deviceId)}:${sessionId ?? UNBOUND}`;
  }

  get size(): number {
    return this.entries.length;
  }

  head(): PendingWrite | undefined {
    return this.entries[0];
  }

  /** Appends a write (not yet saved: call {@link save} and wait before sending it). */
  add(w: { k: string; op: WriteOperation; v?: JsonValue; b?: number }): PendingWrite {
    const e: PendingWrite = { ...w, m: 0, c: newCorrelationId(), durable: false };
    if (this.sessionId === null) e.u = newCorrelationId();
    else e.m = ++this.next;
    this.entries.push(e);
    return e;
  }

  /** Drops a write from the queue (acknowledged, refused, or never saved) and saves. */
  remove(e: PendingWrite): Promise<void> {
    const i = this.entries.indexOf(e);
    if (i < 0) return Promise.resolve();
    this.entries.splice(i, 1);
    return this.save();
  }

  /**
   * Saves the queue as it is when this save's turn comes (saves run one after another, so a
   * slow adapter never lets an older document overwrite a newer one).
   */
  save(): Promise<void> {
    // A save not started yet will write the latest queue anyway: share it (a burst of writes costs one or two saves).
    if (this.queued) return this.queued;
    const run = this.chain.then(() => {
      this.queued = null;
      return this.write();
    });
    this.queued = run;
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Settles once every save asked for so far has finished (or failed). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /**
   * Moves the session-less writes into the document of `sessionId` (now known from
   * AUTH_SUCCESS), giving them mutation ids above everything the server and the document have
   * seen. Two steps, because storage has no transaction: the session document is saved listing
   * the moved writes' ids, then the session-less document is removed. A crash in between leaves
   * both; the next bind sees the ids listed and does not move those writes twice.
   */
  async bind(sessionId: string, lastMutationId: number): Promise<void> {
    if (this.sessionId !== null) return;
    await this.chain;
    // Throws when unreadable: the session's stored writes must not be replaced by these alone.
    const doc = await this.read(this.key(sessionId));
    // From here on synchronous: writes added during the read are moved too.
    const already = new Set(doc?.adopted ?? []);
    const moving = this.entries.filter((e) => !already.has(e.u!));
    this.entries = [];
    this.sessionId = sessionId;
    if (doc) this.adopt(doc);
    this.next = Math.max(this.next, lastMutationId);
    for (const e of moving) {
      e.m = ++this.next;
      this.entries.push(e);
    }
    this.adopted = [...already, ...moving.map((e) => e.u!)];
    await this.save();
    await this.storage.removeItem(this.key(null));
    this.adopted = [];
  }

  /**
   * Squares the queue with the server's `last_mutation_id` for this device (from AUTH_SUCCESS;
   * null from a server that states none) and saves before anything is sent. Returns the writes
   * the server has already processed (applied, or refused with an error a retry would repeat):
   * they leave the queue unsent.
   */
  async reconcile(lastMutationId: number | null): Promise<PendingWrite[]> {
    let dropped: PendingWrite[] = [];
    const was = { next: this.next, synced: this.synced, size: this.entries.length };
    if (lastMutationId !== null) {
      this.next = Math.max(this.next, lastMutationId);
      if (!this.synced) {
        // Nothing here was ever sent: ids the server already knows mean the counter was lost.
        if (this.entries.length > 0 && this.entries[0].m <= lastMutationId) for (const e of this.entries) e.m = ++this.next;
      } else {
        let n = 0;
        while (n < this.entries.length && this.entries[n].m <= lastMutationId) n++;
        dropped = this.entries.splice(0, n);
      }
    }
    // Sending may start now, even to a server that stated nothing: from here on, an id a server
    // knows was processed, and renumbering it would apply it twice.
    this.synced = true;
    if (was.next !== this.next || !was.synced || was.size !== this.entries.length) {
      try {
        await this.save();
      } catch (err) {
        // Storage still says "never compared": the retry must save it again before anything is sent
        // (else a later client would renumber a write this one sent, and it would apply twice).
        this.synced = was.synced;
        throw err;
      }
    }
    return dropped;
  }

  private adopt(doc: OutboxDoc): void {
    this.next = Math.max(this.next, doc.next);
    this.synced = doc.synced;
    this.adopted = doc.adopted ?? [];
    for (const w of doc.pending) this.entries.push({ ...w, durable: true });
  }

  private async write(): Promise<void> {
    const key = this.key(this.sessionId);
    if (this.sessionId === null && this.entries.length === 0) return this.storage.removeItem(key);
    const doc: OutboxDoc = {
      v: 1,
      next: this.next,
      synced: this.synced,
      pending: this.entries.map(({ m, c, k, op, v, b, u }) => ({ m, c, k, op, v, b, u })),
    };
    if (this.adopted.length > 0) doc.adopted = this.adopted;
    await this.storage.setItem(key, JSON.stringify(doc));
  }

  /**
   * The stored document, or null when there is none. A `getItem` that throws is tried again a few
   * times, then the read rejects with `storage_failed`: a failed read tells nothing about what is
   * stored. A value that is not a write queue is reported and read as empty, since reading it
   * again cannot help.
   */
  private async read(key: string): Promise<OutboxDoc | null> {
    let text: string | null | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        text = await this.storage.getItem(key);
        break;
      } catch (err) {
        if (attempt >= READ_ATTEMPTS) {
          throw new SessionError(ClientErrorCode.STORAGE_FAILED, `reading ${key} failed ${attempt} times, last: ${(err as Error)?.message ?? String(err)}; the stored queue is left untouched`);
        }
        await new Promise((r) => setTimeout(r, READ_RETRY_MS * 4 ** (attempt - 1)));
      }
    }
    if (text === null || text === undefined) return null;
    try {
      const doc = JSON.parse(text) as OutboxDoc;
      if (doc && doc.v === 1 && Number.isSafeInteger(doc.next) && Array.isArray(doc.pending)) return doc;
    } catch {
      // reported below
    }
    this.onError(new SessionError(ClientErrorCode.STORAGE_FAILED, `${key} holds no readable write queue; starting empty`));
    return null;
  }
}

let seq = 0;

/** Unique enough per device for the server's 5-minute correlation window; ≤ 24 characters. */
function newCorrelationId(): string {
  return `${Date.now().toString(36)}${(seq++ % 1296).toString(36)}${Math.random().toString(36).slice(2, 10)}`;
}
