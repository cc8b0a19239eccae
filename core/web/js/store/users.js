// @ts-check
// People: profiles seen, friends (with presence), friend requests, blocks, and the user search.
import { t } from '../i18n.js';
import { api, state } from './state.js';
import { refreshConversations } from './conversations.js';
import { fail, toast } from './ui.js';

/** @type {Map<string, Promise<void>>} */
const userFetches = new Map();

/**
 * The direct conversation of two users: `d:<lower id>:<higher id>` (ids compared as numbers).
 * @param {string} a
 * @param {string} b
 */
export const directConv = (a, b) => {
  const [lo, hi] = [BigInt(a), BigInt(b)].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  return `d:${lo}:${hi}`;
};

/** @param {any} u a profile */
export function rememberUser(u) {
  if (!u || !u.id) return;
  const old = state.users.get(u.id);
  state.users.set(u.id, old ? { ...old, ...u } : { ...u });
}

/** Fetch a profile not seen yet (once, in the background). @param {string} id */
export function ensureUser(id) {
  if (!id || state.users.has(id) || userFetches.has(id)) return;
  const p = api
    .request('GET', `/api/users/${id}`)
    .then(rememberUser)
    .catch(() => {})
    .finally(() => userFetches.delete(id));
  userFetches.set(id, p);
}

/** The name to show: my own, a friend's remark, else the display name (… while it loads). @param {string} id */
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

/**
 * A friend's presence, or null while this tab is not connected (then it is not known, so it is not shown).
 * @param {string} userId
 * @returns {boolean | null}
 */
export function presenceOf(userId) {
  if (state.status.state !== 'connected') return null;
  const f = state.friends.get(userId);
  return f ? f.online : null;
}

/** A `presence` frame. @param {{user: string, online: boolean, devices?: number}} f */
export function applyPresence(f) {
  const fr = state.friends.get(f.user);
  if (fr) {
    fr.online = f.online;
    fr.devices = f.devices;
  }
  const u = state.users.get(f.user);
  if (u) u.online = f.online;
}

/** @param {string} userId */
export function isBlocked(userId) {
  return state.blocks.some((u) => u.id === userId);
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
    if (/** @type {any} */ (err).status !== 401) console.warn('friends', err);
  }
}

export async function loadRequests() {
  try {
    const r = await api.request('GET', '/api/friends/requests');
    for (const x of [...r.incoming, ...r.outgoing]) {
      rememberUser(x.from);
      rememberUser(x.to);
    }
    state.requests = {
      incoming: r.incoming.filter((/** @type {any} */ x) => x.status === 'pending'),
      outgoing: r.outgoing.filter((/** @type {any} */ x) => x.status === 'pending'),
    };
  } catch (err) {
    if (/** @type {any} */ (err).status !== 401) console.warn('requests', err);
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

/** @param {string} q */
export async function searchUsers(q) {
  const { users } = await api.request('GET', '/api/users/search', undefined, { query: { q, limit: 20 } });
  users.forEach(rememberUser);
  return users;
}

/** @param {string} userId */
export async function requestFriend(userId) {
  try {
    const r = await api.request('POST', '/api/friends/requests', { user_id: userId, message: '' });
    toast(r.status === 'accepted' ? t('friendAccepted', { name: userName(userId) }) : t('requestSent'));
    await Promise.all([loadRequests(), loadFriends()]);
  } catch (err) {
    fail(err);
  }
}

/**
 * @param {string} id
 * @param {boolean} accept
 */
export async function answerRequest(id, accept) {
  try {
    await api.request('POST', `/api/friends/requests/${id}/${accept ? 'accept' : 'decline'}`);
    await Promise.all([loadRequests(), loadFriends()]);
    if (accept) refreshConversations();
  } catch (err) {
    fail(err);
  }
}

/**
 * A change to a person's relation, then the list it changed reloaded; a refusal is shown.
 * @param {() => Promise<unknown>} request
 * @param {() => Promise<void>} reload
 */
async function relationAction(request, reload) {
  try {
    await request();
    await reload();
  } catch (err) {
    fail(err);
  }
}

/**
 * @param {string} userId
 * @param {string} remark
 */
export const setRemark = (userId, remark) =>
  relationAction(() => api.request('PUT', `/api/friends/${userId}/remark`, { remark }), loadFriends);
/** @param {string} userId */
export const removeFriend = (userId) => relationAction(() => api.request('DELETE', `/api/friends/${userId}`), loadFriends);
/** @param {string} userId */
export const block = (userId) => relationAction(() => api.request('PUT', `/api/blocks/${userId}`), loadBlocks);
/** @param {string} userId */
export const unblock = (userId) => relationAction(() => api.request('DELETE', `/api/blocks/${userId}`), loadBlocks);

export function resetUsers() {
  Object.assign(state, { requests: { incoming: [], outgoing: [] }, blocks: [] });
  state.friends.clear();
  state.users.clear();
  userFetches.clear();
}
