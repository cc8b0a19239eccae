// @ts-check
// The logged-in session: login/register/logout, the socket (Connection) and what its frames do to the state,
// desktop notifications for them, and following another tab's login or logout.
import { markRaw } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { Connection } from '../connection.js';
import { acquireDevice } from '../device.js';
import { errorText, t } from '../i18n.js';
import { loadMuted, notify } from '../notify.js';
import { CLIENT_FRAME, ERROR_CODE, USER_KINDS } from '../protocol.js';
import { api, state } from './state.js';
import {
  ACTIVE_KEY, applyConvMeta, applyOwnRead, bumpConv, convTitle, ensureConv, markLeft, markRead, openConv,
  refreshConversations, resetConversations,
} from './conversations.js';
import { resetGroups } from './groups.js';
import {
  applyReceipt, applyTyping, clearAllTyping, clearTyping, insertMessage, loadReceipts, resetMessages,
} from './messages.js';
import { confirmThen, fail, resetUi, tickClock, toast } from './ui.js';
import {
  applyPresence, loadBlocks, loadFriends, loadRequests, rememberUser, resetUsers, userName,
} from './users.js';

/** @typedef {import('../types.js').Conversation} Conversation */
/** @typedef {import('../types.js').Message} Message */
/** @typedef {import('../types.js').ConnectionHandlers} ConnectionHandlers */

const NOTIFY_FRESH_MS = 60_000;
const CLOCK_TICK_MS = 500;

/** @type {Connection | null} */
let conn = null;

/** The socket of this session, or null when logged out. */
export function connection() {
  return conn;
}

/**
 * A desktop notification for the newest fresh message from someone else (fresh: written in the last minute, so a
 * sync after a long absence does not replay a burst of them).
 * @param {Conversation} c
 * @param {Message[]} msgs
 */
function maybeNotify(c, msgs) {
  const now = Date.now();
  const fresh = msgs.filter(
    (m) => m.from !== state.me.id && USER_KINDS.includes(/** @type {any} */ (m.kind)) && now - m.ts < NOTIFY_FRESH_MS,
  );
  if (!fresh.length) return;
  const m = fresh[fresh.length - 1];
  let body = m.kind === 'text' ? m.body.text || '' : m.kind === 'image' ? t('image') : t('fileLabel', { name: m.body.name || '' });
  if (c.kind === 'group') body = `${userName(m.from)}: ${body}`;
  if (body.length > 140) body = `${body.slice(0, 140)}…`;
  notify(c.conv, convTitle(c) || userName(m.from), body, () => openConv(c.conv));
}

/** What the socket's frames do to the state. @type {ConnectionHandlers} */
export const handlers = {
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
  onConvMeta: applyConvMeta,
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
    clearAllTyping();
  },
  onReceipt(f) {
    if (f.user === state.me.id) applyOwnRead(f.conv, f.read); // read on another device of mine
    else applyReceipt(f);
  },
  onPresence: applyPresence,
  onTyping: applyTyping,
  onNotify(event, data) {
    switch (event) {
      case 'friend.request':
        loadRequests().then(() => toast(t('newRequest', { name: userName(data.from) })));
        break;
      case 'friend.accepted': {
        loadFriends();
        loadRequests();
        refreshConversations();
        const other = (data.users || []).find((/** @type {string} */ u) => u !== state.me.id);
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
      case 'group.removed':
        markLeft(data.conv);
        break;
      default:
        break;
    }
  },
  onError(f) {
    if (f.code === ERROR_CODE.RATE_LIMITED && f.ref === CLIENT_FRAME.TYPING) return;
    fail(f);
  },
  onSendFailed(entry, f) {
    toast(errorText(f), 'error');
  },
  onLoggedOut(reason) {
    endSession(reason && reason.includes('expired') ? t('sessionExpired') : t('loggedOutElsewhere'));
  },
};

/** The server's limits for the forms (defaults stay when it cannot be reached). */
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

/** A stored login on page load: resume it, or show the login screen when that fails. */
export function resumeSession() {
  if (!api.loggedIn) return;
  startSession().catch(() => {
    state.screen = 'login';
  });
}

/** @param {string} [notice] why the login screen is shown */
function endSession(notice = '') {
  if (conn) {
    conn.stop();
    conn.clearPersisted();
    conn = null;
  }
  resetMessages();
  resetConversations();
  resetGroups();
  resetUsers();
  resetUi();
  Object.assign(state, { screen: 'login', notice, me: null });
  if (api.loggedIn) api.clearAuth();
}

/**
 * @param {string} username
 * @param {string} password
 */
export async function login(username, password) {
  const device = await acquireDevice();
  await api.login(username, password, device);
  state.notice = '';
  await startSession();
}

/**
 * @param {string} username
 * @param {string} password
 * @param {string} displayName
 */
export async function register(username, password, displayName) {
  const device = await acquireDevice();
  await api.register(username, password, displayName, device);
  state.notice = '';
  await startSession();
}

export function confirmLogout() {
  confirmThen(t('confirmLogout'), logout);
}

export async function logout() {
  try {
    await api.logout();
  } catch {
    /* the local session ends anyway */
  }
  endSession();
}

export function reconnectNow() {
  if (conn) conn.reconnectNow();
}

/** Once per page (store.js): follow other tabs' logins, mark read on return, tick the views' clock. */
export function installBrowserHooks() {
  api.onAuthChange((/** @type {unknown} */ auth) => {
    if (!auth && state.screen === 'app') endSession(t('loggedOutElsewhere'));
    else if (auth && state.screen === 'login') startSession();
  });
  document.addEventListener('visibilitychange', () => {
    if (state.active) markRead(state.active);
  });
  setInterval(tickClock, CLOCK_TICK_MS);
}
