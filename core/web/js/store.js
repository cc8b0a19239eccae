// Application state (Vue reactivity) and every action the interface can take. The socket (Connection) feeds it
// frames; the REST API (Api) loads lists and history. Views only read this state and call these actions.
import { reactive, shallowReactive, markRaw } from '../vendor/vue/vue.runtime.esm-browser.prod.js';
import { Api } from './api.js';
import { Connection, newCmid } from './connection.js';
import { acquireDevice } from './device.js';
import { errorText, t } from './i18n.js';
import { loadMuted, notify } from './notify.js';

const HISTORY_PAGE = 40;
const OPEN_MAX_PAGES = 3; // opening at the first unread loads at most this many pages; beyond, it opens at the newest
const ACTIVE_KEY = 'wsim.active';
const TYPING_SHOW_MS = 5000;
const TYPING_SEND_EVERY_MS = 3000;

export const api = new Api();

export const state = reactive({
  screen: api.loggedIn ? 'app' : 'login',
  notice: '', // shown on the login screen (why we are here)
  me: api.me,
  device: '',
  config: { recall_window_s: 120, max_text_chars: 5000, upload_max_bytes: 20 * 1024 * 1024, history_page_max: 200 },
  status: { state: 'stopped', retryAt: 0, attempt: 0, node: '', error: '' },
  now: Date.now(),
  tab: 'chats', // chats | contacts
  contactsTab: 'friends', // friends | requests | find | blocked
  active: null, // open conversation id
  panel: null, // right-side panel: 'group' | null
  modal: null, // 'newGroup' | {type: 'remark', user} | ...
  lightbox: null, // {url, name}
  friends: new Map(), // user id -> {user, remark, online, devices, conv, since}
  requests: { incoming: [], outgoing: [] },
  blocks: [], // users
  users: new Map(), // user id -> profile
  convs: new Map(), // conv -> conversation summary
  msgs: new Map(), // conv -> Map(seq -> message)
  history: new Map(), // conv -> {loading, loaded, ready (the opening pages are in)}
  unreadFrom: new Map(), // conv -> first unread seq when the chat was opened (the "new messages" marker)
  marks: new Map(), // conv -> {user id: {delivered, read}}
  groups: new Map(), // conv -> {id, name, owner, members: [{user, role, joined}], dissolved}
  typing: new Map(), // conv -> Map(user id -> until ms)
  outbox: new Map(), // cmid -> pending message (Connection keeps it, persisted per tab)
  uploads: [], // {id, conv, name, size, kind, progress, previewUrl, abort}
  toasts: [],
});

let conn = null;
let toastSeq = 0;
const links = new Map(); // file id -> {url, thumbnail_url, expires}
const userFetches = new Map();
let lastTypingSent = new Map();

// ---------------------------------------------------------------------------------------------- small helpers
export function toast(text, kind = 'info') {
  const id = ++toastSeq;
  state.toasts.push({ id, text, kind });
  if (state.toasts.length > 3) state.toasts.shift();
  setTimeout(() => {
    const i = state.toasts.findIndex((x) => x.id === id);
    if (i >= 0) state.toasts.splice(i, 1);
  }, 3000);
}

function fail(err) {
  toast(errorText(err), 'error');
}

export const directConv = (a, b) => {
  const [lo, hi] = [BigInt(a), BigInt(b)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  return `d:${lo}:${hi}`;
};

function rememberUser(u) {
  if (!u || !u.id) return;
  const old = state.users.get(u.id);
  state.users.set(u.id, old ? { ...old, ...u } : { ...u });
}

export function ensureUser(id) {
  if (!id || state.users.has(id) || userFetches.has(id)) return;
  const p = api
    .request('GET', `/api/users/${id}`)
    .then(rememberUser)
    .catch(() => {})
    .finally(() => userFetches.delete(id));
  userFetches.set(id, p);
}

export function userName(id) {
  if (!id) return '';
  if (state.me && id === state.me.id) return state.me.display_name || state.me.username;
  const f = state.friends.get(id);
  if (f && f.remark) return f.remark;
  const u = state.users.get(id) || (f && f.user);
  if (!u) {
    ensureUser(id);
    return '…';
  }
  return u.display_name || u.username;
}

// A friend's presence, or null while this tab is not connected (then it is not known, so it is not shown).
export function presenceOf(userId) {
  if (state.status.state !== 'connected') return null;
  const f = state.friends.get(userId);
  return f ? f.online : null;
}

export function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'group') {
    const g = state.groups.get(c.conv);
    return (g && g.name) || c.name || '';
  }
  return userName(c.peer);
}

export function peerOf(conv) {
  const [, a, b] = conv.split(':');
  return a === state.me.id ? b : a;
}

// Unread as the seq range after the read mark, less the "you are friends now" notices in it: a notice is not a
// message anyone wrote (the server counts the range; the notices are known from the messages seen).
export function unreadOf(c) {
  const from = Math.max(c.readSeq, c.firstSeq - 1);
  let n = c.lastSeq - from;
  for (const seq of c.notices) if (seq > from && seq <= c.lastSeq) n -= 1;
  return Math.max(0, n);
}

const isNotice = (msg) => msg && msg.kind === 'system' && msg.body && msg.body.event === 'friend.accepted';

function noteNotice(c, msg) {
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

function ensureConv(conv) {
  let c = state.convs.get(conv);
  if (!c) {
    const group = conv.startsWith('g:');
    c = {
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
      notices: [], // seqs of friend notices (not counted as unread)
    };
    state.convs.set(conv, c);
    c = state.convs.get(conv); // the reactive proxy: changes through it update the views
    if (group) refreshConversations();
  }
  return c;
}

function convMsgs(conv) {
  let m = state.msgs.get(conv);
  if (!m) {
    m = shallowReactive(new Map());
    state.msgs.set(conv, m);
  }
  return m;
}

// Messages of a conversation in seq order (recall events are applied, not shown).
export function messagesOf(conv) {
  const m = state.msgs.get(conv);
  if (!m) return [];
  return [...m.values()].filter((x) => x.kind !== 'recall').sort((a, b) => a.seq - b.seq);
}

export function pendingOf(conv) {
  return [...state.outbox.values()].filter((e) => e.conv === conv).sort((a, b) => a.createdAt - b.createdAt);
}

export function hasOlder(conv) {
  const c = state.convs.get(conv);
  const m = state.msgs.get(conv);
  if (!c) return false;
  if (!m || !m.size) return c.lastSeq >= c.firstSeq;
  let min = Infinity;
  for (const s of m.keys()) if (s < min) min = s;
  return min > c.firstSeq;
}

// ---------------------------------------------------------------------------------------------- incoming data
export function insertMessage(msg) {
  const m = convMsgs(msg.conv);
  const old = m.get(msg.seq);
  if (old && old.recalled && !msg.recalled) return; // never un-recall
  m.set(msg.seq, markRaw({ ...msg }));
  if (msg.kind === 'recall') applyRecall(msg);
}

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

function bumpConv(c, msg) {
  if (msg.seq > c.lastSeq) c.lastSeq = msg.seq;
  noteNotice(c, msg);
  if (!c.last || msg.seq >= c.last.seq) {
    c.last = msg;
    c.updated = Math.max(c.updated, msg.ts);
  }
  // Sending marks the conversation read up to the message (server side too); system and recall entries do not.
  if (msg.from === state.me.id && ['text', 'image', 'file'].includes(msg.kind)) c.readSeq = Math.max(c.readSeq, msg.seq);
  if (msg.kind === 'system') onSystemMessage(c, msg);
}

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

const handlers = {
  onMessages(conv, msgs) {
    const c = ensureConv(conv);
    const before = c.lastSeq;
    maybeNotify(c, msgs.filter((m) => m.seq > before));
    for (const msg of msgs) {
      insertMessage(msg);
      bumpConv(c, msg);
      if (msg.from !== state.me.id) clearTyping(conv, msg.from);
    }
    if (conv === state.active) markRead(conv);
  },
  onConvMeta(conv, { lastSeq, firstSeq }) {
    const c = ensureConv(conv);
    c.lastSeq = Math.max(c.lastSeq, lastSeq);
    c.firstSeq = firstSeq;
  },
  onSynced() {
    refreshConversations();
    loadFriends();
    loadRequests();
    if (state.active) {
      loadReceipts(state.active);
      markRead(state.active);
    }
  },
  onDisconnected() {
    state.typing.clear();
  },
  onReceipt(f) {
    if (f.user === state.me.id) {
      const c = state.convs.get(f.conv);
      if (c && f.read) c.readSeq = Math.max(c.readSeq, f.read); // read on another device of mine
      return;
    }
    let marks = state.marks.get(f.conv);
    if (!marks) {
      state.marks.set(f.conv, {});
      marks = state.marks.get(f.conv);
    }
    const old = marks[f.user] || { delivered: 0, read: 0 };
    marks[f.user] = {
      delivered: Math.max(old.delivered, f.delivered || 0, f.read || 0),
      read: Math.max(old.read, f.read || 0),
    };
  },
  onPresence(f) {
    const fr = state.friends.get(f.user);
    if (fr) {
      fr.online = f.online;
      fr.devices = f.devices;
    }
    const u = state.users.get(f.user);
    if (u) u.online = f.online;
  },
  onTyping(f) {
    let m = state.typing.get(f.conv);
    if (!m) {
      state.typing.set(f.conv, new Map());
      m = state.typing.get(f.conv);
    }
    m.set(f.user, Date.now() + TYPING_SHOW_MS);
  },
  onNotify(event, data) {
    switch (event) {
      case 'friend.request':
        loadRequests().then(() => toast(t('newRequest', { name: userName(data.from) })));
        break;
      case 'friend.accepted': {
        loadFriends();
        loadRequests();
        refreshConversations();
        const other = (data.users || []).find((u) => u !== state.me.id);
        if (other) toast(t('friendAccepted', { name: userName(other) }));
        break;
      }
      case 'friend.declined':
        loadRequests();
        break;
      case 'friend.removed':
        loadFriends();
        break;
      case 'group.added':
        refreshConversations();
        // The creator is told too (she is a member of the new group): the toast is only for people added by others.
        // Only creation makes the owner a member, so "I own it" means "I just made it".
        api.request('GET', `/api/groups/${data.group}`)
          .then((g) => {
            if (g.owner !== state.me.id) toast(t('addedToGroup', { name: data.name }));
          })
          .catch(() => toast(t('addedToGroup', { name: data.name })));
        break;
      case 'group.removed': {
        const c = state.convs.get(data.conv);
        if (c) c.left = true;
        break;
      }
      default:
        break;
    }
  },
  onError(f) {
    if (f.code === 'rate_limited' && f.ref === 'typing') return;
    fail(f);
  },
  onSendFailed(entry, f) {
    toast(errorText(f), 'error');
  },
  onLoggedOut(reason) {
    endSession(reason && reason.includes('expired') ? t('sessionExpired') : t('loggedOutElsewhere'));
  },
};

// A desktop notification for the newest fresh message from someone else (fresh: written in the last minute, so a
// sync after a long absence does not replay a burst of them).
function maybeNotify(c, msgs) {
  const now = Date.now();
  const fresh = msgs.filter((m) => m.from !== state.me.id && ['text', 'image', 'file'].includes(m.kind) && now - m.ts < 60_000);
  if (!fresh.length) return;
  const m = fresh[fresh.length - 1];
  let body = m.kind === 'text' ? m.body.text || '' : m.kind === 'image' ? t('image') : t('fileLabel', { name: m.body.name || '' });
  if (c.kind === 'group') body = `${userName(m.from)}: ${body}`;
  if (body.length > 140) body = `${body.slice(0, 140)}…`;
  notify(c.conv, convTitle(c) || userName(m.from), body, () => openConv(c.conv));
}

function clearTyping(conv, user) {
  const m = state.typing.get(conv);
  if (m) m.delete(user);
}

export function typingNames(conv) {
  const m = state.typing.get(conv);
  if (!m) return [];
  const out = [];
  for (const [user, until] of m) if (until > state.now) out.push(userName(user));
  return out;
}

// ---------------------------------------------------------------------------------------------- loading
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
    if (err.status !== 401) console.warn('conversations', err);
  }
}

export async function loadFriends() {
  try {
    const { friends } = await api.request('GET', '/api/friends');
    const next = new Map();
    for (const f of friends) {
      rememberUser(f.user);
      next.set(f.user.id, { ...f });
    }
    state.friends = next;
  } catch (err) {
    if (err.status !== 401) console.warn('friends', err);
  }
}

export async function loadRequests() {
  try {
    const r = await api.request('GET', '/api/friends/requests');
    for (const x of [...r.incoming, ...r.outgoing]) {
      rememberUser(x.from);
      rememberUser(x.to);
    }
    state.requests = { incoming: r.incoming.filter((x) => x.status === 'pending'), outgoing: r.outgoing.filter((x) => x.status === 'pending') };
  } catch (err) {
    if (err.status !== 401) console.warn('requests', err);
  }
}

export async function loadBlocks() {
  try {
    const { users } = await api.request('GET', '/api/blocks');
    users.forEach(rememberUser);
    state.blocks = users;
  } catch (err) {
    fail(err);
  }
}

export async function loadReceipts(conv) {
  try {
    const r = await api.request('GET', `/api/conversations/${conv}/receipts`);
    const marks = {};
    for (const [user, m] of Object.entries(r.marks)) if (user !== state.me.id) marks[user] = m;
    const old = state.marks.get(conv) || {};
    for (const [user, m] of Object.entries(old)) {
      marks[user] = marks[user]
        ? { delivered: Math.max(marks[user].delivered, m.delivered), read: Math.max(marks[user].read, m.read) }
        : m;
    }
    state.marks.set(conv, marks);
  } catch (err) {
    if (err.status !== 403 && err.status !== 401) console.warn('receipts', err);
  }
}

export async function loadGroup(conv) {
  const c = state.convs.get(conv);
  if (!c || c.kind !== 'group') return;
  try {
    const g = await api.request('GET', `/api/groups/${c.group}`);
    g.members.forEach((m) => rememberUser(m.user));
    state.groups.set(conv, g);
    c.name = g.name;
    c.dissolved = g.dissolved;
  } catch (err) {
    if (err.code === 'not_member') c.left = true;
  }
}

// The newest page when a conversation is first opened, then older pages as the view scrolls up.
export async function loadHistory(conv, older = false) {
  let h = state.history.get(conv);
  if (!h) {
    h = { loading: false, loaded: false };
    state.history.set(conv, h);
  }
  if (h.loading || (!older && h.loaded)) return;
  const m = convMsgs(conv);
  let before;
  if (older) {
    if (!hasOlder(conv)) return;
    before = Math.min(...m.keys());
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
    // Recall events on this page point at older messages that may already be shown.
    h.loaded = true;
  } catch (err) {
    if (err.code === 'not_member') ensureConv(conv).left = true;
    else fail(err);
  } finally {
    h.loading = false;
  }
}

// ---------------------------------------------------------------------------------------------- session
export async function loadConfig() {
  try {
    Object.assign(state.config, await api.request('GET', '/api/client-config', undefined, { auth: false }));
  } catch {
    /* defaults stay */
  }
}

export async function startSession() {
  if (conn) return;
  state.me = api.me;
  state.screen = 'app';
  state.device = await acquireDevice();
  if (conn || !api.loggedIn) return;
  conn = markRaw(
    new Connection({ api, device: state.device, handlers, status: state.status, outbox: state.outbox }),
  );
  conn.start();
  loadMuted(state.me.id);
  await Promise.all([loadFriends(), loadRequests(), refreshConversations(), loadBlocks()]);
  // A reload reopens the chat that was open in this tab.
  const saved = sessionStorage.getItem(ACTIVE_KEY);
  if (saved && !state.active && state.convs.has(saved)) openConv(saved);
  api.request('GET', '/api/users/me').then((me) => {
    state.me = me;
    rememberUser(me);
  }).catch(() => {});
}

function endSession(notice = '') {
  if (conn) {
    conn.stop();
    conn.clearPersisted();
    conn = null;
  }
  for (const u of state.uploads) u.abort();
  Object.assign(state, {
    screen: 'login',
    notice,
    me: null,
    active: null,
    panel: null,
    modal: null,
    lightbox: null,
    requests: { incoming: [], outgoing: [] },
    blocks: [],
    uploads: [],
  });
  sessionStorage.removeItem(ACTIVE_KEY);
  for (const k of ['friends', 'users', 'convs', 'msgs', 'history', 'unreadFrom', 'marks', 'groups', 'typing', 'outbox']) state[k].clear();
  links.clear();
  lastTypingSent = new Map();
  if (api.loggedIn) api.clearAuth();
}

export async function login(username, password) {
  const device = await acquireDevice();
  await api.login(username, password, device);
  state.notice = '';
  await startSession();
}

export async function register(username, password, displayName) {
  const device = await acquireDevice();
  await api.register(username, password, displayName, device);
  state.notice = '';
  await startSession();
}

export function confirmLogout() {
  state.modal = { type: 'confirm', text: t('confirmLogout'), ok: logout };
}

export async function logout() {
  try {
    await api.logout();
  } catch {
    /* the local session ends anyway */
  }
  endSession();
}

// Another tab logged out or in: follow it.
api.onAuthChange((auth) => {
  if (!auth && state.screen === 'app') endSession(t('loggedOutElsewhere'));
  else if (auth && state.screen === 'login') startSession();
});

export function reconnectNow() {
  if (conn) conn.reconnectNow();
}

// ---------------------------------------------------------------------------------------------- conversations
// Open a chat at its first unread message (marked "new messages") when that is within a few pages, else at the
// newest. The stream positions itself once history.ready is set.
export async function openConv(conv) {
  state.active = conv;
  sessionStorage.setItem(ACTIVE_KEY, conv);
  state.tab = 'chats';
  const c = ensureConv(conv);
  state.panel = null;
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

function minLoaded(conv) {
  const m = state.msgs.get(conv);
  let min = Infinity;
  if (m) for (const s of m.keys()) if (s < min) min = s;
  return min;
}

export function closeConv() {
  state.active = null;
  state.panel = null;
  sessionStorage.removeItem(ACTIVE_KEY);
}

export function markRead(conv) {
  const c = state.convs.get(conv);
  if (!c || document.visibilityState !== 'visible' || conv !== state.active) return;
  const seq = c.lastSeq;
  if (seq <= c.readSeq || !conn) return;
  if (conn.sendIfReady({ type: 'message.read', conv, seq })) c.readSeq = seq;
}

document.addEventListener('visibilitychange', () => {
  if (state.active) markRead(state.active);
});

// `reply`: {seq, quote} of the message this one answers (reply / quote), or null.
export function sendText(conv, text, reply = null) {
  const body = text.replace(/\s+$/, '');
  if (!body.trim() || !conn) return false;
  const entry = { cmid: newCmid(), conv, kind: 'text', text: body, body: { text: body } };
  if (reply) Object.assign(entry, { reply_to: reply.seq, quote: reply.quote, body: { text: body, reply_to: reply.seq } });
  conn.enqueue(entry);
  lastTypingSent.delete(conv); // the others cleared the indicator on this message: the next keystroke tells them
  return true;
}

export function notifyTyping(conv) {
  if (!conn) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(conv) || 0) < TYPING_SEND_EVERY_MS) return;
  lastTypingSent.set(conv, now);
  conn.sendIfReady({ type: 'typing', conv });
}

export function sendFile(conv, file) {
  if (!conn) return;
  if (file.size > state.config.upload_max_bytes) {
    toast(t('err_too_large'), 'error');
    return;
  }
  const isImage = /^image\/(png|jpeg|gif|webp)$/.test(file.type);
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
  const { promise, abort } = api.upload(file, (p) => {
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
      const body = { file: meta.id, name: meta.name, size: meta.size, mime: meta.mime };
      if (meta.width != null) Object.assign(body, { width: meta.width, height: meta.height });
      done();
      conn.enqueue({ cmid: newCmid(), conv, kind, file: meta.id, body });
    })
    .catch((err) => {
      done();
      if (err.code !== 'aborted') fail(err);
    });
}

export function retrySend(cmid) {
  if (conn) conn.retry(cmid);
}

export function discardSend(cmid) {
  if (conn) conn.discard(cmid);
}

export function canRecall(msg) {
  return (
    msg.from === state.me.id &&
    !msg.recalled &&
    ['text', 'image', 'file'].includes(msg.kind) &&
    state.now - msg.ts < state.config.recall_window_s * 1000
  );
}

export function recall(msg) {
  if (!conn || !conn.sendIfReady({ type: 'message.recall', id: msg.id })) toast(t('err_network'), 'error');
}

// Ticks for my message: 'sent' | 'delivered' | 'read' (direct), and read counts for groups.
export function receiptOf(msg) {
  const c = state.convs.get(msg.conv);
  const marks = state.marks.get(msg.conv) || {};
  if (c && c.kind === 'group') {
    const g = state.groups.get(msg.conv);
    const others = g ? g.members.filter((m) => m.user.id !== state.me.id).map((m) => m.user.id) : Object.keys(marks);
    const readers = others.filter((u) => marks[u] && marks[u].read >= msg.seq).length;
    return { status: readers && readers === others.length ? 'read' : 'sent', readers, total: others.length };
  }
  const peer = c ? c.peer : null;
  const m = peer ? marks[peer] : null;
  if (m && m.read >= msg.seq) return { status: 'read' };
  if (m && m.delivered >= msg.seq) return { status: 'delivered' };
  return { status: 'sent' };
}

// Signed links for <img src> and downloads (they cannot carry the bearer header); cached until near expiry.
export async function fileLink(fileId) {
  const hit = links.get(fileId);
  if (hit && hit.expires - Date.now() > 60_000) return hit;
  const link = await api.request('POST', `/api/files/${fileId}/link`);
  links.set(fileId, link);
  return link;
}

// ---------------------------------------------------------------------------------------------- friends
export async function searchUsers(q) {
  const { users } = await api.request('GET', '/api/users/search', undefined, { query: { q, limit: 20 } });
  users.forEach(rememberUser);
  return users;
}

export async function requestFriend(userId) {
  try {
    const r = await api.request('POST', '/api/friends/requests', { user_id: userId, message: '' });
    toast(r.status === 'accepted' ? t('friendAccepted', { name: userName(userId) }) : t('requestSent'));
    await Promise.all([loadRequests(), loadFriends()]);
  } catch (err) {
    fail(err);
  }
}

export async function answerRequest(id, accept) {
  try {
    await api.request('POST', `/api/friends/requests/${id}/${accept ? 'accept' : 'decline'}`);
    await Promise.all([loadRequests(), loadFriends()]);
    if (accept) refreshConversations();
  } catch (err) {
    fail(err);
  }
}

export async function setRemark(userId, remark) {
  try {
    await api.request('PUT', `/api/friends/${userId}/remark`, { remark });
    await loadFriends();
  } catch (err) {
    fail(err);
  }
}

export async function removeFriend(userId) {
  try {
    await api.request('DELETE', `/api/friends/${userId}`);
    await loadFriends();
  } catch (err) {
    fail(err);
  }
}

export async function block(userId) {
  try {
    await api.request('PUT', `/api/blocks/${userId}`);
    await loadBlocks();
  } catch (err) {
    fail(err);
  }
}

export async function unblock(userId) {
  try {
    await api.request('DELETE', `/api/blocks/${userId}`);
    await loadBlocks();
  } catch (err) {
    fail(err);
  }
}

export function isBlocked(userId) {
  return state.blocks.some((u) => u.id === userId);
}

// ---------------------------------------------------------------------------------------------- groups
export async function createGroup(name, memberIds) {
  try {
    const g = await api.request('POST', '/api/groups', { name, members: memberIds });
    await refreshConversations();
    openConv(g.conv);
    return g;
  } catch (err) {
    fail(err);
    return null;
  }
}

async function groupAction(conv, fn) {
  try {
    await fn(state.convs.get(conv).group);
    await loadGroup(conv);
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}

export const renameGroup = (conv, name) =>
  groupAction(conv, (g) => api.request('PATCH', `/api/groups/${g}`, { name }));
export const addMembers = (conv, ids) =>
  groupAction(conv, (g) => api.request('POST', `/api/groups/${g}/members`, { user_ids: ids }));
export const removeMember = (conv, uid) =>
  groupAction(conv, (g) => api.request('DELETE', `/api/groups/${g}/members/${uid}`));
export const setRole = (conv, uid, role) =>
  groupAction(conv, (g) => api.request('PUT', `/api/groups/${g}/members/${uid}/role`, { role }));

export async function leaveGroup(conv) {
  const c = state.convs.get(conv);
  try {
    await api.request('POST', `/api/groups/${c.group}/leave`);
    c.left = true;
    state.panel = null;
  } catch (err) {
    fail(err);
  }
}

export async function dissolveGroup(conv) {
  const c = state.convs.get(conv);
  try {
    await api.request('POST', `/api/groups/${c.group}/dissolve`);
    c.dissolved = true;
    await loadGroup(conv);
  } catch (err) {
    fail(err);
  }
}

export function myRole(conv) {
  const g = state.groups.get(conv);
  const m = g && g.members.find((x) => x.user.id === state.me.id);
  return m ? m.role : null;
}

// ---------------------------------------------------------------------------------------------- clock, title
setInterval(() => {
  state.now = Date.now();
}, 500);

export function connection() {
  return conn;
}
