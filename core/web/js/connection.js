// @ts-check
// The chat socket: authentication, sync from per-conversation cursors, in-order release, acks, heartbeats,
// token renewal, reconnection with backoff, and the outbox. docs/protocol.md is the contract; this mirrors the
// Python SDK (core/sdk/client.py) and docs/web-client.md explains the choices.
//
// Reliability as the user sees it:
// - a message is in the outbox (persisted per tab in sessionStorage) until the server's `message.sent` says it is
//   stored; after a reconnect or a reload the outbox is resent with the same cmid, so a resend can never create
//   a second message;
// - after every (re)connect the tab syncs from its cursors (also persisted), and fills any seq hole it notices
//   with a targeted sync: messages reach the view exactly once and in order (OrderingBuffer);
// - the state shown ("connected", "reconnecting in N s") is the socket's real state.

import { reconnectDelayMs } from './backoff.js';
import { OrderingBuffer } from './ordering.js';
import { CLIENT_FRAME, CLOSE_CODE, ERROR_CODE, SERVER_FRAME } from './protocol.js';

/** @typedef {import('./types.js').Message} Message */
/** @typedef {import('./types.js').OutboxEntry} OutboxEntry */
/** @typedef {import('./types.js').Status} Status */
/** @typedef {import('./types.js').ConnectionHandlers} ConnectionHandlers */
/** @typedef {import('./api.js').Api} Api */

const TICK_MS = 250;
const RENEW_MARGIN_MS = 60_000;
const ACK_DELAY_MS = 50;
// The client's own close code for "drop and reconnect" (4000-4999 is the application range; the server never
// sends 4000).
const CLIENT_RECONNECT = 4000;

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/**
 * @param {string} key
 * @param {any} fallback
 */
function loadJson(key, fallback) {
  try {
    const v = JSON.parse(sessionStorage.getItem(key) || 'null');
    return v === null ? fallback : v;
  } catch {
    return fallback;
  }
}

/** A client message id: unique per tab and time-ordered enough to read in logs. */
export function newCmid() {
  const bytes = crypto.getRandomValues(new Uint8Array(9));
  return `w${Date.now().toString(36)}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

export class Connection {
  /**
   * @param {object} opts
   * @param {Api} opts.api
   * @param {string} opts.device
   * @param {ConnectionHandlers} opts.handlers
   * @param {Status} opts.status a reactive object the UI reads
   * @param {Map<string, OutboxEntry>} opts.outbox reactive, shown as pending messages
   * @param {{baseMs?: number, capMs?: number}} [opts.backoff]
   */
  constructor({ api, device, handlers, status, outbox, backoff = {} }) {
    this.api = api;
    this.device = device;
    this.h = handlers;
    this.status = status;
    this.outbox = outbox;
    this.backoff = backoff;
    this.userId = api.me.id;
    /** @type {OrderingBuffer<Message>} */
    this.ordering = new OrderingBuffer(1000);
    this.ackMode = 'three_state';
    this.heartbeatMs = 30_000;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.stopped = true;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this._retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this._ticker = undefined;
    /** @type {Set<string>} */
    this._ackDirty = new Set();
    /** @type {Map<string, number>} */
    this._acked = new Map();
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._ackTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this._saveTimer = null;
    this._lastRx = 0;
    this._lastPing = 0;
    this._socketTokenExpires = 0;
    this._renewing = false;
    this._authRetried = false;
    this._syncMore = false;
    this._keys = { outbox: `wsim.outbox.${this.userId}.${device}`, cursors: `wsim.cursors.${this.userId}.${device}` };
    this.ordering.restore(loadJson(this._keys.cursors, {}));
    for (const e of loadJson(this._keys.outbox, [])) {
      if (e && e.cmid && e.conv) this.outbox.set(e.cmid, { ...e, state: e.state === 'failed' ? 'failed' : 'pending' });
    }
    this._onOnline = () => {
      if (this.status.state === 'waiting') this.reconnectNow();
    };
    this._onPageHide = () => this._flushSave(); // a reload must not lose the last half second of cursors
  }

  // ------------------------------------------------------------------ life cycle
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this._onOnline);
    window.addEventListener('pagehide', this._onPageHide);
    this._ticker = setInterval(() => this._tick(), TICK_MS);
    this._connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('pagehide', this._onPageHide);
    clearInterval(this._ticker);
    clearTimeout(this._retryTimer);
    if (this._ackTimer) clearTimeout(this._ackTimer);
    this._flushSave();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = ws.onmessage = ws.onerror = null;
      try {
        ws.close(CLOSE_CODE.NORMAL);
      } catch {
        /* already closing */
      }
    }
    this._setState('stopped');
  }

  clearPersisted() {
    sessionStorage.removeItem(this._keys.outbox);
    sessionStorage.removeItem(this._keys.cursors);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    clearTimeout(this._retryTimer);
    this._connect();
  }

  // Drop the socket without a close handshake, as a network failure would (used by tests and "reconnect").
  drop() {
    if (this.ws) this.ws.close(CLIENT_RECONNECT, 'client reconnect');
  }

  /**
   * @param {string} state
   * @param {Partial<Status>} [extra]
   */
  _setState(state, extra = {}) {
    Object.assign(this.status, { state, retryAt: 0, error: '' }, extra);
  }

  async _connect() {
    if (this.stopped) return;
    this._setState('connecting', { attempt: this.attempt });
    try {
      if (this.api.accessExpiresSoon(30_000)) await this.api.refresh();
    } catch (err) {
      if (/** @type {{status?: number}} */ (err).status === 401) return this._loggedOut('session expired');
      return this._scheduleReconnect();
    }
    if (this.stopped || !this.api.auth) return;
    const auth = this.api.auth;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      return this._scheduleReconnect();
    }
    this.ws = ws;
    ws.onopen = () => {
      this._setState('authenticating');
      this._lastRx = Date.now();
      ws.send(JSON.stringify({ type: CLIENT_FRAME.AUTH, token: auth.access_token, device: this.device }));
      this._socketTokenExpires = auth.access_expires;
    };
    ws.onmessage = (ev) => {
      this._lastRx = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      this._onFrame(frame);
    };
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {
      /* onclose follows with the code */
    };
  }

  /**
   * @param {WebSocket} ws
   * @param {number} code
   * @param {string} reason
   */
  async _onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this._syncMore = false;
    if (this.stopped) return;
    this.h.onDisconnected(code, reason);
    if (code === CLOSE_CODE.SESSION_REVOKED) return this._loggedOut(reason || 'logged out');
    if (code === CLOSE_CODE.REPLACED) {
      this.stopped = true;
      clearInterval(this._ticker);
      return this._setState('replaced');
    }
    if (code === CLOSE_CODE.UNAUTHORIZED || code === CLOSE_CODE.TOKEN_EXPIRED) {
      if (code === CLOSE_CODE.UNAUTHORIZED && this._authRetried) return this._loggedOut(reason || 'unauthorized');
      this._authRetried = true;
      try {
        await this.api.refresh();
      } catch (err) {
        if (/** @type {{status?: number}} */ (err).status === 401) return this._loggedOut('session expired');
        return this._scheduleReconnect();
      }
      return this._connect();
    }
    this._scheduleReconnect();
  }

  /** @param {string} reason */
  _loggedOut(reason) {
    this.stop();
    this.clearPersisted();
    this.h.onLoggedOut(reason);
  }

  _scheduleReconnect() {
    if (this.stopped) return;
    const delay = reconnectDelayMs(this.attempt, this.backoff);
    this.attempt += 1;
    this._setState('waiting', { retryAt: Date.now() + delay, attempt: this.attempt });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  // ------------------------------------------------------------------ sending
  /** @param {Record<string, unknown>} frame */
  _send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  get ready() {
    return this.status.state === 'connected';
  }

  // Frames that need an authenticated socket but are not worth queueing (typing, read marks are re-sent later).
  /** @param {Record<string, unknown>} frame */
  sendIfReady(frame) {
    return this.ready && this._send(frame);
  }

  /**
   * Queue a chat message; it is sent now if connected, else after the next sync.
   * @param {OutboxEntry} entry
   */
  enqueue(entry) {
    this.outbox.set(entry.cmid, { ...entry, state: 'pending', createdAt: Date.now() });
    const e = /** @type {OutboxEntry} */ (this.outbox.get(entry.cmid)); // reactive: state changes show in the view
    this._persistOutbox();
    if (this.ready) this._sendEntry(e);
    return e;
  }

  /** @param {string} cmid */
  retry(cmid) {
    const e = this.outbox.get(cmid);
    if (!e) return;
    e.state = 'pending';
    e.error = '';
    this._persistOutbox();
    if (this.ready) this._sendEntry(e);
  }

  /** @param {string} cmid */
  discard(cmid) {
    this.outbox.delete(cmid);
    this._persistOutbox();
  }

  /** @param {OutboxEntry} e */
  _sendEntry(e) {
    /** @type {Record<string, unknown>} */
    const frame = { type: CLIENT_FRAME.MESSAGE_SEND, cmid: e.cmid, conv: e.conv, kind: e.kind };
    if (e.text) frame.text = e.text;
    if (e.file) frame.file = e.file;
    if (e.reply_to) frame.reply_to = e.reply_to;
    if (!this._send(frame)) return;
    e.attempts = (e.attempts || 0) + 1;
    if (this.ackMode === 'off') e.state = 'unconfirmed'; // no "sent" ack under this experiment arm
  }

  _flushOutbox() {
    for (const e of this.outbox.values()) if (e.state === 'pending') this._sendEntry(e);
  }

  _persistOutbox() {
    const items = [...this.outbox.values()].map(({ progress, ...rest }) => rest);
    sessionStorage.setItem(this._keys.outbox, JSON.stringify(items));
  }

  // ------------------------------------------------------------------ inbound
  /** @param {any} f a server frame (docs/protocol.md) */
  _onFrame(f) {
    switch (f.type) {
      case SERVER_FRAME.AUTH_OK:
        this.attempt = 0;
        this._authRetried = false;
        this.ackMode = f.ack;
        this.heartbeatMs = f.heartbeat_s * 1000;
        this._socketTokenExpires = f.token_expires;
        this._lastPing = Date.now();
        this._setState('syncing', { node: f.node });
        this._sync();
        break;
      case SERVER_FRAME.SYNC_BATCH:
        this._onSyncBatch(f);
        break;
      case SERVER_FRAME.SYNC_DONE:
        if (f.more || this._syncMore) {
          this._syncMore = false;
          this._sync();
        } else if (this.status.state === 'syncing') {
          this._setState('connected', { node: this.status.node });
          this._flushOutbox();
          this.h.onSynced();
        }
        break;
      case SERVER_FRAME.SYNC_REQUIRED:
        this._sync();
        break;
      case SERVER_FRAME.MESSAGE_NEW:
        this._onPushed(f.msg);
        break;
      case SERVER_FRAME.MESSAGE_SENT:
        this._onSent(f);
        break;
      case SERVER_FRAME.RECEIPT:
        this.h.onReceipt(f);
        break;
      case SERVER_FRAME.PRESENCE:
        this.h.onPresence(f);
        break;
      case SERVER_FRAME.TYPING:
        this.h.onTyping(f);
        break;
      case SERVER_FRAME.NOTIFY:
        this.h.onNotify(f.event, f.data);
        break;
      case SERVER_FRAME.ERROR:
        this._onError(f);
        break;
      default:
        break; // pong, and frame types added later
    }
  }

  // Every known cursor goes along: a conversation sent without one would get its recent history again.
  _sync() {
    this._send({ type: CLIENT_FRAME.SYNC, cursors: this.ordering.cursors() });
  }

  /**
   * @param {string} conv
   * @param {Message[]} msgs
   */
  _release(conv, msgs) {
    const real = msgs.filter(Boolean);
    if (real.length) this.h.onMessages(conv, real);
    this._markAck(conv);
    this._scheduleSave();
  }

  /** @param {Message} msg */
  _onPushed(msg) {
    const offer = this.ordering.offer(msg.conv, msg.seq, msg, Date.now());
    if (offer.needsSync) this._sync();
    this._release(msg.conv, offer.ready);
  }

  /** @param {any} f a message.sent frame */
  _onSent(f) {
    const e = this.outbox.get(f.cmid);
    this.outbox.delete(f.cmid);
    this._persistOutbox();
    /** @type {Message} */
    const msg = {
      id: f.id,
      conv: f.conv,
      seq: f.seq,
      from: this.userId,
      device: this.device,
      cmid: f.cmid,
      kind: e ? e.kind : 'text',
      body: e ? e.body : {},
      ts: f.ts,
      recalled: false,
    };
    if (e && e.quote) msg.quote = e.quote;
    if (this.ordering.cursor(f.conv) === null) {
      // A conversation this tab has not synced yet: the sync brings this message with the rest.
      this._sync();
      return;
    }
    // Without its entry (a second ack for a resend) the body is unknown here: leave the seq to the stream, and
    // a sync fills it if nothing else does.
    if (!e) return;
    this._release(f.conv, this.ordering.offer(f.conv, f.seq, msg, Date.now()).ready);
  }

  /** @param {any} f a sync.batch frame */
  _onSyncBatch(f) {
    const { conv, messages } = f;
    this.h.onConvMeta(conv, { lastSeq: f.last_seq, firstSeq: f.first_seq });
    const cursor = this.ordering.cursor(conv);
    if (cursor === null || cursor < 0) {
      const start = messages.length ? messages[0].seq - 1 : f.last_seq;
      this._release(conv, this.ordering.setCursor(conv, start));
    }
    const now = Date.now();
    for (const m of messages) {
      if (m.device === this.device && m.from === this.userId && this.outbox.has(m.cmid)) {
        this.outbox.delete(m.cmid); // stored before the ack was lost: the sync is the ack
        this._persistOutbox();
      }
      const offer = this.ordering.offer(conv, m.seq, m, now);
      this._release(conv, offer.ready);
    }
    if (f.more) this._syncMore = true;
  }

  /** @param {any} f an error frame */
  _onError(f) {
    const e = f.ref ? this.outbox.get(f.ref) : undefined;
    if (!e) {
      this.h.onError(f);
      return;
    }
    if (f.code === ERROR_CODE.UNAVAILABLE || f.code === ERROR_CODE.RATE_LIMITED) {
      setTimeout(() => {
        if (this.outbox.get(e.cmid) === e && e.state === 'pending' && this.ready) this._sendEntry(e);
      }, f.retry_after_ms || 1000);
      return;
    }
    e.state = 'failed';
    e.error = f.code;
    e.errorMessage = f.message;
    this._persistOutbox();
    this.h.onSendFailed(e, f);
  }

  // ------------------------------------------------------------------ acks, cursors, timers
  /** @param {string} conv */
  _markAck(conv) {
    if (this.ackMode === 'off') return;
    this._ackDirty.add(conv);
    if (!this._ackTimer) this._ackTimer = setTimeout(() => this._flushAcks(), ACK_DELAY_MS);
  }

  _flushAcks() {
    this._ackTimer = null;
    const dirty = this._ackDirty;
    this._ackDirty = new Set();
    for (const conv of dirty) {
      const cursor = this.ordering.cursor(conv);
      if (cursor === null || cursor <= 0 || (this._acked.get(conv) || 0) >= cursor) continue;
      if (this._send({ type: CLIENT_FRAME.MESSAGE_ACK, conv, seq: cursor })) this._acked.set(conv, cursor);
    }
  }

  _scheduleSave() {
    if (!this._saveTimer) this._saveTimer = setTimeout(() => this._flushSave(), 500);
  }

  _flushSave() {
    if (this._saveTimer) clearTimeout(this._saveTimer);
    this._saveTimer = null;
    sessionStorage.setItem(this._keys.cursors, JSON.stringify(this.ordering.cursors()));
  }

  /** @param {string} conv */
  cursor(conv) {
    return this.ordering.cursor(conv);
  }

  _tick() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.status.state === 'authenticating') return;
    const now = Date.now();
    if (now - this._lastPing >= this.heartbeatMs) {
      this._lastPing = now;
      this._send({ type: CLIENT_FRAME.PING, ts: now });
    }
    if (now - this._lastRx > this.heartbeatMs * 2 + 5000) {
      ws.close(CLOSE_CODE.HEARTBEAT_TIMEOUT, 'server silent'); // a dead link: reconnect
      return;
    }
    const gaps = this.ordering.gaps(now);
    if (gaps.length) {
      for (const conv of gaps) this.ordering.markSyncing(conv, now);
      this._sync();
    }
    if (!this._renewing && this._socketTokenExpires - now < RENEW_MARGIN_MS) this._renew(ws);
  }

  /** @param {WebSocket} ws */
  async _renew(ws) {
    this._renewing = true;
    try {
      if (this.api.accessExpiresSoon(RENEW_MARGIN_MS)) await this.api.refresh();
      if (ws === this.ws && this.api.auth) {
        ws.send(JSON.stringify({ type: CLIENT_FRAME.AUTH_RENEW, token: this.api.auth.access_token }));
        this._socketTokenExpires = this.api.auth.access_expires;
      }
    } catch (err) {
      if (/** @type {{status?: number}} */ (err).status === 401) this._loggedOut('session expired');
    } finally {
      this._renewing = false;
    }
  }
}
