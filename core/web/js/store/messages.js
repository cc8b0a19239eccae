// @ts-check
// Messages per conversation (history paging, recalls), receipts, typing, sending (text, files) and file links.
import { markRaw, reactive, shallowReactive } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { newCmid } from '../connection.js';
import { t } from '../i18n.js';
import { CLIENT_FRAME, ERROR_CODE, USER_KINDS } from '../protocol.js';
import { api, state } from './state.js';
import { ensureConv, markLeft, noteNotice } from './conversations.js';
import { connection } from './session.js';
import { fail, toast } from './ui.js';
import { userName } from './users.js';

/** @typedef {import('../types.js').Message} Message */
/** @typedef {import('../types.js').Mark} Mark */
/** @typedef {import('../types.js').Upload} Upload */

const HISTORY_PAGE = 40;
const TYPING_SHOW_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;

/** @type {Map<string, {url: string, thumbnail_url?: string, expires: number}>} file id -> signed link */
const links = new Map();
/** @type {Map<string, number>} conv -> when I last sent `typing` */
const lastTypingSent = new Map();

/** @param {string} kind */
const isUserKind = (kind) => USER_KINDS.includes(/** @type {any} */ (kind));

/** @param {string} conv */
function convMsgs(conv) {
  let m = state.msgs.get(conv);
  if (!m) {
    m = shallowReactive(new Map());
    state.msgs.set(conv, m);
  }
  return /** @type {Map<number, Message>} */ (m);
}

/**
 * Messages of a conversation in seq order (recall events are applied, not shown).
 * @param {string} conv
 */
export function messagesOf(conv) {
  const m = state.msgs.get(conv);
  if (!m) return [];
  return [...m.values()].filter((x) => x.kind !== 'recall').sort((a, b) => a.seq - b.seq);
}

/** My messages of `conv` still in the outbox, oldest first. @param {string} conv */
export function pendingOf(conv) {
  return [...state.outbox.values()]
    .filter((e) => e.conv === conv)
    .sort((a, b) => (a.createdAt || 0) - (b.createdAt || 0));
}

/** The lowest seq loaded (Infinity when none). @param {string} conv */
export function minLoaded(conv) {
  const m = state.msgs.get(conv);
  let min = Infinity;
  if (m) for (const s of m.keys()) if (s < min) min = s;
  return min;
}

/** @param {string} conv */
export function hasOlder(conv) {
  const c = state.convs.get(conv);
  const m = state.msgs.get(conv);
  if (!c) return false;
  if (!m || !m.size) return c.lastSeq >= c.firstSeq;
  return minLoaded(conv) > c.firstSeq;
}

/** @param {Message} msg */
export function insertMessage(msg) {
  const m = convMsgs(msg.conv);
  const old = m.get(msg.seq);
  if (old && old.recalled && !msg.recalled) return; // never un-recall
  m.set(msg.seq, markRaw({ ...msg }));
  if (msg.kind === 'recall') applyRecall(msg);
}

/** @param {Message} ev a recall event: its body names the recalled seq */
function applyRecall(ev) {
  const m = convMsgs(ev.conv);
  const target = m.get(ev.body.seq);
  if (target && !target.recalled) m.set(target.seq, markRaw({ ...target, recalled: true, body: {} }));
  // Replies quoting it now say "original recalled" (the server sends no snippet for it any more).
  for (const x of m.values()) {
    if (x.quote && x.quote.seq === ev.body.seq && !x.quote.recalled) {
      m.set(x.seq, markRaw({ ...x, quote: { seq: x.quote.seq, id: x.quote.id, from: x.quote.from, recalled: true } }));
    }
  }
  const c = state.convs.get(ev.conv);
  if (c && c.last && c.last.seq === ev.body.seq) c.last = { ...c.last, recalled: true, body: {} };
}

/**
 * The newest page when a conversation is first opened, then older pages as the view scrolls up.
 * @param {string} conv
 * @param {boolean} [older]
 */
export async function loadHistory(conv, older = false) {
  let h = state.history.get(conv);
  if (!h) {
    state.history.set(conv, { loading: false, loaded: false });
    h = /** @type {{loading: boolean, loaded: boolean}} */ (state.history.get(conv));
  }
  if (h.loading || (!older && h.loaded)) return;
  let before;
  if (older) {
    if (!hasOlder(conv)) return;
    before = minLoaded(conv);
  }
  h.loading = true;
  try {
    const page = await api.request('GET', `/api/conversations/${conv}/messages`, undefined, {
      query: { before, limit: HISTORY_PAGE },
    });
    const c = ensureConv(conv);
    c.firstSeq = page.first_seq;
    for (const msg of page.messages) {
      insertMessage(msg);
      noteNotice(c, msg);
      if (msg.seq > c.lastSeq) c.lastSeq = msg.seq;
    }
    h.loaded = true;
  } catch (err) {
    if (/** @type {any} */ (err).code === ERROR_CODE.NOT_MEMBER) {
      ensureConv(conv);
      markLeft(conv);
    } else fail(err);
  } finally {
    h.loading = false;
  }
}

/**
 * Someone else's delivered/read marks (a `receipt` frame); marks only move forward.
 * @param {{conv: string, user: string, delivered?: number, read?: number}} f
 */
export function applyReceipt(f) {
  let marks = state.marks.get(f.conv);
  if (!marks) {
    state.marks.set(f.conv, {});
    marks = /** @type {Record<string, Mark>} */ (state.marks.get(f.conv));
  }
  const old = marks[f.user] || { delivered: 0, read: 0 };
  marks[f.user] = {
    delivered: Math.max(old.delivered, f.delivered || 0, f.read || 0),
    read: Math.max(old.read, f.read || 0),
  };
}

/** @param {string} conv */
export async function loadReceipts(conv) {
  try {
    const r = await api.request('GET', `/api/conversations/${conv}/receipts`);
    /** @type {Record<string, Mark>} */
    const marks = {};
    for (const [user, m] of Object.entries(r.marks)) if (user !== state.me.id) marks[user] = /** @type {Mark} */ (m);
    const old = state.marks.get(conv) || {};
    for (const [user, m] of Object.entries(old)) {
      marks[user] = marks[user]
        ? { delivered: Math.max(marks[user].delivered, m.delivered), read: Math.max(marks[user].read, m.read) }
        : m;
    }
    state.marks.set(conv, marks);
  } catch (err) {
    const status = /** @type {any} */ (err).status;
    if (status !== 403 && status !== 401) console.warn('receipts', err);
  }
}

/**
 * Ticks for my message: 'sent' | 'delivered' | 'read' (direct), and read counts for groups.
 * @param {Message} msg
 * @returns {{status: string, readers?: number, total?: number}}
 */
export function receiptOf(msg) {
  const c = state.convs.get(msg.conv);
  const marks = state.marks.get(msg.conv) || {};
  if (c && c.kind === 'group') {
    const g = state.groups.get(msg.conv);
    const others = g
      ? g.members.filter((/** @type {any} */ m) => m.user.id !== state.me.id).map((/** @type {any} */ m) => m.user.id)
      : Object.keys(marks);
    const readers = others.filter((/** @type {string} */ u) => marks[u] && marks[u].read >= msg.seq).length;
    return { status: readers && readers === others.length ? 'read' : 'sent', readers, total: others.length };
  }
  const peer = c ? c.peer : null;
  const m = peer ? marks[peer] : null;
  if (m && m.read >= msg.seq) return { status: 'read' };
  if (m && m.delivered >= msg.seq) return { status: 'delivered' };
  return { status: 'sent' };
}

/** Someone is typing in `conv` (shown for a few seconds). @param {{conv: string, user: string}} f */
export function applyTyping(f) {
  let m = state.typing.get(f.conv);
  if (!m) {
    state.typing.set(f.conv, new Map());
    m = /** @type {Map<string, number>} */ (state.typing.get(f.conv));
  }
  m.set(f.user, Date.now() + TYPING_SHOW_MS);
}

/**
 * Their message arrived: they stopped typing it.
 * @param {string} conv
 * @param {string} user
 */
export function clearTyping(conv, user) {
  const m = state.typing.get(conv);
  if (m) m.delete(user);
}

/** Typing is only known while connected. */
export function clearAllTyping() {
  state.typing.clear();
}

/** Names of who is typing in `conv` now. @param {string} conv */
export function typingNames(conv) {
  const m = state.typing.get(conv);
  if (!m) return [];
  const out = [];
  for (const [user, until] of m) if (until > state.now) out.push(userName(user));
  return out;
}

/**
 * Send a text message; `reply`: {seq, quote} of the message this one answers, or null.
 * @param {string} conv
 * @param {string} text
 * @param {{seq: number, quote: any} | null} [reply]
 * @returns {boolean} whether it was queued (empty text is not)
 */
export function sendText(conv, text, reply = null) {
  const conn = connection();
  const body = text.replace(/\s+$/, '');
  if (!body.trim() || !conn) return false;
  /** @type {import('../types.js').OutboxEntry} */
  const entry = { cmid: newCmid(), conv, kind: 'text', text: body, body: { text: body } };
  if (reply) Object.assign(entry, { reply_to: reply.seq, quote: reply.quote, body: { text: body, reply_to: reply.seq } });
  conn.enqueue(entry);
  lastTypingSent.delete(conv); // the others cleared the indicator on this message: the next keystroke tells them
  return true;
}

/** A keystroke in the composer: tell the others, at most every few seconds. @param {string} conv */
export function notifyTyping(conv) {
  const conn = connection();
  if (!conn) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(conv) || 0) < TYPING_SEND_EVERY_MS) return;
  lastTypingSent.set(conv, now);
  conn.sendIfReady({ type: CLIENT_FRAME.TYPING, conv });
}

/**
 * Upload a file (with progress), then send it as an image or file message.
 * @param {string} conv
 * @param {File} file
 */
export function sendFile(conv, file) {
  if (!connection()) return;
  if (file.size > state.config.upload_max_bytes) {
    toast(t('err_too_large'), 'error');
    return;
  }
  const isImage = /^image\/(png|jpeg|gif|webp)$/.test(file.type);
  /** @type {Upload} */
  const job = reactive({
    id: newCmid(),
    conv,
    name: file.name,
    size: file.size,
    kind: isImage ? 'image' : 'file',
    progress: 0,
    previewUrl: isImage ? URL.createObjectURL(file) : '',
    abort: () => {},
  });
  const { promise, abort } = api.upload(file, (/** @type {number} */ p) => {
    job.progress = p;
  });
  job.abort = abort;
  state.uploads.push(job);
  const done = () => {
    const i = state.uploads.indexOf(job);
    if (i >= 0) state.uploads.splice(i, 1);
    if (job.previewUrl) URL.revokeObjectURL(job.previewUrl);
  };
  promise
    .then((meta) => {
      const kind = meta.width != null ? 'image' : 'file';
      /** @type {Record<string, any>} */
      const body = { file: meta.id, name: meta.name, size: meta.size, mime: meta.mime };
      if (meta.width != null) Object.assign(body, { width: meta.width, height: meta.height });
      done();
      const conn = connection();
      if (conn) conn.enqueue({ cmid: newCmid(), conv, kind, file: meta.id, body });
    })
    .catch((err) => {
      done();
      if (err.code !== 'aborted') fail(err);
    });
}

/** @param {string} cmid */
export function retrySend(cmid) {
  const conn = connection();
  if (conn) conn.retry(cmid);
}

/** @param {string} cmid */
export function discardSend(cmid) {
  const conn = connection();
  if (conn) conn.discard(cmid);
}

/** @param {Message} msg */
export function canRecall(msg) {
  return (
    msg.from === state.me.id &&
    !msg.recalled &&
    isUserKind(msg.kind) &&
    state.now - msg.ts < state.config.recall_window_s * 1000
  );
}

/** @param {Message} msg */
export function recall(msg) {
  const conn = connection();
  if (!conn || !conn.sendIfReady({ type: CLIENT_FRAME.MESSAGE_RECALL, id: msg.id })) toast(t('err_network'), 'error');
}

/**
 * Signed links for <img src> and downloads (they cannot carry the bearer header); cached until near expiry.
 * @param {string} fileId
 */
export async function fileLink(fileId) {
  const hit = links.get(fileId);
  if (hit && hit.expires - Date.now() > 60_000) return hit;
  const link = await api.request('POST', `/api/files/${fileId}/link`);
  links.set(fileId, link);
  return link;
}

export function resetMessages() {
  for (const u of state.uploads) u.abort();
  state.uploads = [];
  for (const k of /** @type {const} */ (['msgs', 'history', 'marks', 'typing', 'outbox'])) state[k].clear();
  links.clear();
  lastTypingSent.clear();
}
