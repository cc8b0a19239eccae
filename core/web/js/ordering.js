// @ts-check
// Per-conversation ordering and de-duplication: a line-for-line mirror of core/protocol/ordering.py.
//
// Pushes can arrive out of order (several senders, server retries, several nodes) or twice (a retry after a
// lost ack, a sync overlapping a push). Each conversation keeps a cursor (highest seq released in order),
// buffers what is ahead, drops what is at or below the cursor, and reports a hole that stays open longer than
// gapTimeoutMs so the connection can fill it with a `sync` from the cursor. Pure: time is passed in.
// tests/vectors/ordering.json holds cases that this module and the Python one must both pass (tests/js, and
// tests/unit/test_ordering.py), so the two cannot drift apart.

/**
 * @template T
 * @typedef {{cursor: number, buffered: Map<number, T>, gapSince: number | null}} ConvState
 */

/**
 * @template T
 * @typedef {{ready: T[], duplicate: boolean, needsSync: boolean}} Offer
 */

/** @template T */
export class OrderingBuffer {
  constructor(gapTimeoutMs = 1000, maxBuffered = 10000) {
    this.gapTimeoutMs = gapTimeoutMs;
    this.maxBuffered = maxBuffered;
    /** @type {Map<string, ConvState<T>>} */
    this.convs = new Map();
  }

  /**
   * @param {string} conv
   * @returns {number | null}
   */
  cursor(conv) {
    const c = this.convs.get(conv);
    return c === undefined ? null : c.cursor;
  }

  // Cursors of the conversations whose position is known (a cursor of -1 means "waiting for a sync").
  cursors() {
    /** @type {Record<string, number>} */
    const out = {};
    for (const [conv, c] of this.convs) if (c.cursor >= 0) out[conv] = c.cursor;
    return out;
  }

  /**
   * Restore cursors persisted across a reload (never moves an existing cursor backwards).
   * @param {Record<string, unknown> | null | undefined} cursors
   */
  restore(cursors) {
    for (const [conv, seq] of Object.entries(cursors || {})) {
      if (Number.isSafeInteger(seq) && seq >= 0) this.setCursor(conv, seq);
    }
  }

  /**
   * Learn a conversation's position (from a sync batch): never moves backwards; returns what it releases.
   * @param {string} conv
   * @param {number} seq
   * @returns {T[]}
   */
  setCursor(conv, seq) {
    let c = this.convs.get(conv);
    if (c === undefined) {
      c = { cursor: seq, buffered: new Map(), gapSince: null };
      this.convs.set(conv, c);
    } else if (seq > c.cursor) {
      c.cursor = seq;
      for (const s of [...c.buffered.keys()]) if (s <= seq) c.buffered.delete(s);
    }
    return this._drain(c);
  }

  /**
   * `ready`: items to release in order; `needsSync`: an unknown conversation (sync it to learn where it starts).
   * @param {string} conv
   * @param {number} seq
   * @param {T} item
   * @param {number} now
   * @returns {Offer<T>}
   */
  offer(conv, seq, item, now) {
    let c = this.convs.get(conv);
    if (c === undefined) {
      c = { cursor: -1, buffered: new Map([[seq, item]]), gapSince: now };
      this.convs.set(conv, c);
      return { ready: [], duplicate: false, needsSync: true };
    }
    if (c.cursor < 0) {
      const dup = c.buffered.has(seq);
      if (!dup) c.buffered.set(seq, item);
      return { ready: [], duplicate: dup, needsSync: false };
    }
    if (seq <= c.cursor || c.buffered.has(seq)) return { ready: [], duplicate: true, needsSync: false };
    c.buffered.set(seq, item);
    const ready = this._drain(c);
    if (c.buffered.size && c.gapSince === null) c.gapSince = now;
    if (c.buffered.size > this.maxBuffered) c.gapSince = -Infinity; // force a sync now
    return { ready, duplicate: false, needsSync: false };
  }

  /**
   * @param {ConvState<T>} c
   * @returns {T[]}
   */
  _drain(c) {
    if (c.cursor < 0) return [];
    /** @type {T[]} */
    const ready = [];
    let next = c.cursor + 1;
    while (c.buffered.has(next)) {
      ready.push(/** @type {T} */ (c.buffered.get(next)));
      c.buffered.delete(next);
      c.cursor = next;
      next += 1;
    }
    if (!c.buffered.size) c.gapSince = null;
    return ready;
  }

  /**
   * Conversations whose hole has been open for longer than the gap timeout.
   * @param {number} now
   */
  gaps(now) {
    /** @type {string[]} */
    const out = [];
    for (const [conv, c] of this.convs) {
      if (c.gapSince !== null && now - c.gapSince >= this.gapTimeoutMs) out.push(conv);
    }
    return out;
  }

  /**
   * A sync was requested for conv: restart its gap timer so it is not requested again at once.
   * @param {string} conv
   * @param {number} now
   */
  markSyncing(conv, now) {
    const c = this.convs.get(conv);
    if (c !== undefined && c.gapSince !== null) c.gapSince = now;
  }
}
