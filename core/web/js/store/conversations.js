// @ts-check
// The conversation list (summaries, unread counts, the open conversation) and opening/closing a chat.
import { CLIENT_FRAME, USER_KINDS } from '../protocol.js';
import { api, state } from './state.js';
import { loadGroup } from './groups.js';
import { hasOlder, loadHistory, loadReceipts, minLoaded } from './messages.js';
import { connection } from './session.js';
import { closePanel, showTab } from './ui.js';
import { userName } from './users.js';

/** @typedef {import('../types.js').Conversation} Conversation */
/** @typedef {import('../types.js').Message} Message */

export const ACTIVE_KEY = 'wsim.active';
const OPEN_MAX_PAGES = 3; // opening at the first unread loads at most this many pages; beyond, it opens at the newest

/** The other user of a direct conversation. @param {string} conv */
export function peerOf(conv) {
  const [, a, b] = conv.split(':');
  return a === state.me.id ? b : a;
}

/**
 * Unread as the seq range after the read mark, less the "you are friends now" notices in it: a notice is not a
 * message anyone wrote (the server counts the range; the notices are known from the messages seen).
 * @param {Conversation} c
 */
export function unreadOf(c) {
  const from = Math.max(c.readSeq, c.firstSeq - 1);
  let n = c.lastSeq - from;
  for (const seq of c.notices) if (seq > from && seq <= c.lastSeq) n -= 1;
  return Math.max(0, n);
}

/** @param {Message | null | undefined} msg */
const isNotice = (msg) => !!msg && msg.kind === 'system' && msg.body && msg.body.event === 'friend.accepted';

/**
 * @param {Conversation} c
 * @param {Message} msg
 */
export function noteNotice(c, msg) {
  if (isNotice(msg) && !c.notices.includes(msg.seq)) c.notices.push(msg.seq);
}

export function totalUnread() {
  let n = 0;
  for (const c of state.convs.values()) n += unreadOf(c);
  return n;
}

export function sortedConvs() {
  return [...state.convs.values()].sort((a, b) => b.updated - a.updated || (a.conv < b.conv ? -1 : 1));
}

/** @param {Conversation | null | undefined} c */
export function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'group') {
    const g = state.groups.get(c.conv);
    return (g && g.name) || c.name || '';
  }
  return userName(/** @type {string} */ (c.peer));
}

/**
 * The summary of `conv`, created empty when first seen (a group's name and members then load).
 * @param {string} conv
 * @returns {Conversation} the reactive proxy: changes through it update the views
 */
export function ensureConv(conv) {
  let c = state.convs.get(conv);
  if (!c) {
    const group = conv.startsWith('g:');
    state.convs.set(conv, {
      conv,
      kind: group ? 'group' : 'direct',
      lastSeq: 0,
      readSeq: 0,
      firstSeq: 1,
      last: null,
      updated: 0,
      peer: group ? null : peerOf(conv),
      group: group ? conv.slice(2) : null,
      name: '',
      dissolved: false,
      left: false,
      notices: [],
    });
    c = /** @type {Conversation} */ (state.convs.get(conv));
    if (group) refreshConversations();
  }
  return c;
}

/**
 * What a sync batch says about the conversation's range.
 * @param {string} conv
 * @param {{lastSeq: number, firstSeq: number}} meta
 */
export function applyConvMeta(conv, { lastSeq, firstSeq }) {
  const c = ensureConv(conv);
  c.lastSeq = Math.max(c.lastSeq, lastSeq);
  c.firstSeq = firstSeq;
}

/**
 * A message released in order: the summary's last message, range and (for my own) read mark follow it.
 * @param {Conversation} c
 * @param {Message} msg
 */
export function bumpConv(c, msg) {
  if (msg.seq > c.lastSeq) c.lastSeq = msg.seq;
  noteNotice(c, msg);
  if (!c.last || msg.seq >= c.last.seq) {
    c.last = msg;
    c.updated = Math.max(c.updated, msg.ts);
  }
  // Sending marks the conversation read up to the message (server side too); system and recall entries do not.
  if (msg.from === state.me.id && USER_KINDS.includes(/** @type {any} */ (msg.kind))) {
    c.readSeq = Math.max(c.readSeq, msg.seq);
  }
  if (msg.kind === 'system') onSystemMessage(c, msg);
}

/**
 * @param {Conversation} c
 * @param {Message} msg
 */
function onSystemMessage(c, msg) {
  const ev = msg.body.event;
  if (c.kind !== 'group') return;
  if (ev === 'group.dissolved') c.dissolved = true;
  if ((ev === 'group.member_removed' || ev === 'group.member_left') && (msg.body.users || []).includes(state.me.id)) {
    c.left = true;
  }
  if (ev === 'group.members_added' && (msg.body.users || []).includes(state.me.id)) c.left = false;
  if (ev === 'group.renamed' && msg.body.name) c.name = msg.body.name;
  if (ev.startsWith('group.') && state.groups.has(c.conv) && !c.left) loadGroup(c.conv);
}

/**
 * My read mark moved (on another device of mine, or by sending).
 * @param {string} conv
 * @param {number} seq
 */
export function applyOwnRead(conv, seq) {
  const c = state.convs.get(conv);
  if (c && seq) c.readSeq = Math.max(c.readSeq, seq);
}

/** I am no longer a member of the group (removed, or I left): it stays readable. @param {string} conv */
export function markLeft(conv) {
  const c = state.convs.get(conv);
  if (c) c.left = true;
}

/** @param {string} conv */
export function markDissolved(conv) {
  const c = state.convs.get(conv);
  if (c) c.dissolved = true;
}

/**
 * A group's name and state as the server has them.
 * @param {string} conv
 * @param {{name: string, dissolved: boolean}} g
 */
export function applyGroupSummary(conv, g) {
  const c = state.convs.get(conv);
  if (!c) return;
  c.name = g.name;
  c.dissolved = g.dissolved;
}

export async function refreshConversations() {
  try {
    const { conversations } = await api.request('GET', '/api/conversations');
    const seen = new Set();
    for (const r of conversations) {
      seen.add(r.conv);
      const c = ensureConv(r.conv);
      c.lastSeq = Math.max(c.lastSeq, r.last_seq);
      c.readSeq = Math.max(c.readSeq, r.read_seq);
      c.firstSeq = r.first_seq;
      if (r.last && (!c.last || r.last.seq >= c.last.seq)) c.last = r.last;
      if (r.last) noteNotice(c, r.last);
      c.updated = Math.max(c.updated, r.updated);
      if (r.kind === 'group') {
        c.name = r.name || '';
        c.dissolved = !!r.dissolved;
        c.left = false;
      }
    }
    for (const c of state.convs.values()) if (c.kind === 'group' && !seen.has(c.conv)) c.left = true;
  } catch (err) {
    if (/** @type {any} */ (err).status !== 401) console.warn('conversations', err);
  }
}

/**
 * Open a chat at its first unread message (marked "new messages") when that is within a few pages, else at the
 * newest. The stream positions itself once history.ready is set.
 * @param {string} conv
 */
export async function openConv(conv) {
  state.active = conv;
  sessionStorage.setItem(ACTIVE_KEY, conv);
  showTab('chats');
  const c = ensureConv(conv);
  closePanel();
  const h0 = state.history.get(conv);
  if (h0) h0.ready = false;
  const unread = unreadOf(c);
  if (unread > 0) state.unreadFrom.set(conv, Math.max(c.readSeq, c.firstSeq - 1) + 1);
  else state.unreadFrom.delete(conv);
  loadReceipts(conv);
  if (c.kind === 'group') loadGroup(conv);
  markRead(conv);
  await loadHistory(conv);
  const from = state.unreadFrom.get(conv);
  for (let i = 1; from && i < OPEN_MAX_PAGES && hasOlder(conv) && minLoaded(conv) > from; i++) {
    await loadHistory(conv, true);
  }
  if (from && minLoaded(conv) > from && hasOlder(conv)) state.unreadFrom.delete(conv);
  const h = state.history.get(conv);
  if (h) h.ready = true;
}

export function closeConv() {
  state.active = null;
  closePanel();
  sessionStorage.removeItem(ACTIVE_KEY);
}

/** Tell the server (and my other devices) that the open chat is read, while the tab is visible. @param {string} conv */
export function markRead(conv) {
  const c = state.convs.get(conv);
  const conn = connection();
  if (!c || document.visibilityState !== 'visible' || conv !== state.active) return;
  const seq = c.lastSeq;
  if (seq <= c.readSeq || !conn) return;
  if (conn.sendIfReady({ type: CLIENT_FRAME.MESSAGE_READ, conv, seq })) c.readSeq = seq;
}

export function resetConversations() {
  state.active = null;
  state.convs.clear();
  state.unreadFrom.clear();
  sessionStorage.removeItem(ACTIVE_KEY);
}
