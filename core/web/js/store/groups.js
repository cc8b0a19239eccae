// @ts-check
// Groups: members and roles, and what managers and members can do (rename, add, remove, leave, dissolve).
import { ERROR_CODE } from '../protocol.js';
import { api, state } from './state.js';
import { applyGroupSummary, markDissolved, markLeft, openConv, refreshConversations } from './conversations.js';
import { closePanel, fail } from './ui.js';
import { rememberUser } from './users.js';

/** @param {string} conv a group conversation (`g:<id>`) */
export async function loadGroup(conv) {
  const c = state.convs.get(conv);
  if (!c || c.kind !== 'group') return;
  try {
    const g = await api.request('GET', `/api/groups/${c.group}`);
    g.members.forEach((/** @type {any} */ m) => rememberUser(m.user));
    state.groups.set(conv, g);
    applyGroupSummary(conv, g);
  } catch (err) {
    if (/** @type {any} */ (err).code === ERROR_CODE.NOT_MEMBER) markLeft(conv);
  }
}

/**
 * Create a group and open it; null when the server refused (the reason is shown).
 * @param {string} name
 * @param {string[]} memberIds
 */
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

/**
 * @param {string} conv
 * @param {(group: string) => Promise<unknown>} fn
 */
async function groupAction(conv, fn) {
  const c = state.convs.get(conv);
  try {
    await fn(/** @type {string} */ (c && c.group));
    await loadGroup(conv);
    return true;
  } catch (err) {
    fail(err);
    return false;
  }
}

/**
 * @param {string} conv
 * @param {string} name
 */
export const renameGroup = (conv, name) =>
  groupAction(conv, (g) => api.request('PATCH', `/api/groups/${g}`, { name }));
/**
 * @param {string} conv
 * @param {string[]} ids
 */
export const addMembers = (conv, ids) =>
  groupAction(conv, (g) => api.request('POST', `/api/groups/${g}/members`, { user_ids: ids }));
/**
 * @param {string} conv
 * @param {string} uid
 */
export const removeMember = (conv, uid) =>
  groupAction(conv, (g) => api.request('DELETE', `/api/groups/${g}/members/${uid}`));
/**
 * @param {string} conv
 * @param {string} uid
 * @param {string} role owner | admin | member
 */
export const setRole = (conv, uid, role) =>
  groupAction(conv, (g) => api.request('PUT', `/api/groups/${g}/members/${uid}/role`, { role }));

/** @param {string} conv */
export async function leaveGroup(conv) {
  const c = state.convs.get(conv);
  try {
    await api.request('POST', `/api/groups/${c && c.group}/leave`);
    markLeft(conv);
    closePanel();
  } catch (err) {
    fail(err);
  }
}

/** @param {string} conv */
export async function dissolveGroup(conv) {
  const c = state.convs.get(conv);
  try {
    await api.request('POST', `/api/groups/${c && c.group}/dissolve`);
    markDissolved(conv);
    await loadGroup(conv);
  } catch (err) {
    fail(err);
  }
}

/** My role in the group, or null when I am not a member. @param {string} conv */
export function myRole(conv) {
  const g = state.groups.get(conv);
  const m = g && g.members.find((/** @type {any} */ x) => x.user.id === state.me.id);
  return m ? m.role : null;
}

export function resetGroups() {
  state.groups.clear();
}
