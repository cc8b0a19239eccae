// Per-conversation ordering and de-duplication: a line-for-line mirror of core/protocol/ordering.py.
//
// Pushes can arrive out of order (several senders, server retries, several nodes) or twice (a retry after a
// lost ack, a sync overlapping a push). Each conversation keeps a cursor (highest seq released in order),
// buffers what is ahead, drops what is at or below the cursor, and reports a hole that stays open longer than
// gapTimeoutMs so the connection can fill it with a `sync` from the cursor. Pure: time is passed in.

export class OrderingBuffer {
  constructor(gapTimeoutMs = 1000, maxBuffered = 10000) {
    this.gapTimeoutMs = gapTimeoutMs;
    this.maxBuffered = maxBuffered;
    this.convs = new Map(); // conv -> {cursor, buffered: Map<seq, item>, gapSince}
  }

  cursor(conv) {
    const c = this.convs.get(conv);
    return c === undefined ? null : c.cursor;
  }

  // Cursors of the conversations whose position is known (a cursor of -1 means "waiting for a sync").
  cursors() {
    const out = {};
    for (const [conv, c] of this.convs) if (c.cursor >= 0) out[conv] = c.cursor;
    return out;
  }

  // Restore cursors persisted across a reload (never moves an existing cursor backwards).
  restore(cursors) {
    for (const [conv, seq] of Object.entries(cursors || {})) {
      if (Number.isSafeInteger(seq) && seq >= 0) this.setCursor(conv, seq);
    }
  }

  // Learn a conversation's position (from a sync batch): never moves backwards; returns what it releases.
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

  // -> {ready: items to release in order, duplicate, needsSync (unknown conversation)}
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

  _drain(c) {
    if (c.cursor < 0) return [];
    const ready = [];
    let next = c.cursor + 1;
    while (c.buffered.has(next)) {
      ready.push(c.buffered.get(next));
      c.buffered.delete(next);
      c.cursor = next;
      next += 1;
    }
    if (!c.buffered.size) c.gapSince = null;
    return ready;
  }

  // Conversations whose hole has been open for longer than the gap timeout.
  gaps(now) {
    const out = [];
    for (const [conv, c] of this.convs) {
      if (c.gapSince !== null && now - c.gapSince >= this.gapTimeoutMs) out.push(conv);
    }
    return out;
  }

  // A sync was requested for conv: restart its gap timer so it is not requested again at once.
  markSyncing(conv, now) {
    const c = this.convs.get(conv);
    if (c !== undefined && c.gapSince !== null) c.gapSince = now;
  }
}
