// @ts-check
// The application state (Vue reactivity): one object that views read and that only the store's slices change
// (store/ui.js, users.js, conversations.js, messages.js, groups.js, session.js, each owning the fields listed
// against it below; store/replies.js keeps the reply bar and message search in its own `rs`). Views call the
// slices' actions, re-exported by store.js; they never assign state.
import { reactive } from '../../vendor/vue/vue.runtime.esm-browser.prod.js';
import { Api } from '../api.js';

/** @typedef {import('../types.js').Conversation} Conversation */
/** @typedef {import('../types.js').Message} Message */
/** @typedef {import('../types.js').Mark} Mark */
/** @typedef {import('../types.js').OutboxEntry} OutboxEntry */
/** @typedef {import('../types.js').Upload} Upload */
/** @typedef {import('../types.js').Status} Status */

export const api = new Api();

export const state = reactive({
  // session.js
  screen: api.loggedIn ? 'app' : 'login',
  notice: '', // shown on the login screen (why we are here)
  /** @type {any} */
  me: api.me,
  device: '',
  config: { recall_window_s: 120, max_text_chars: 5000, upload_max_bytes: 20 * 1024 * 1024, history_page_max: 200 },
  /** @type {Status} */
  status: { state: 'stopped', retryAt: 0, attempt: 0, node: '', error: '' },
  // ui.js
  now: Date.now(),
  tab: 'chats', // chats | contacts
  contactsTab: 'friends', // friends | requests | find | blocked
  /** @type {'group' | null} right-side panel */
  panel: null,
  /** @type {any} 'newGroup' | {type: 'remark', user} | {type: 'confirm', text, ok} | ... */
  modal: null,
  /** @type {{url: string, name: string} | null} */
  lightbox: null,
  /** @type {{id: number, text: string, kind: string}[]} */
  toasts: [],
  // users.js
  /** @type {Map<string, any>} user id -> {user, remark, online, devices, conv, since} */
  friends: new Map(),
  /** @type {{incoming: any[], outgoing: any[]}} */
  requests: { incoming: [], outgoing: [] },
  /** @type {any[]} users */
  blocks: [],
  /** @type {Map<string, any>} user id -> profile */
  users: new Map(),
  // conversations.js
  /** @type {string | null} open conversation id */
  active: null,
  /** @type {Map<string, Conversation>} */
  convs: new Map(),
  /** @type {Map<string, number>} conv -> first unread seq when the chat was opened (the "new messages" marker) */
  unreadFrom: new Map(),
  // messages.js
  /** @type {Map<string, Map<number, Message>>} conv -> seq -> message */
  msgs: new Map(),
  /** @type {Map<string, {loading: boolean, loaded: boolean, ready?: boolean}>} paging state per conv */
  history: new Map(),
  /** @type {Map<string, Record<string, Mark>>} conv -> user id -> marks */
  marks: new Map(),
  /** @type {Map<string, Map<string, number>>} conv -> user id -> typing until (ms) */
  typing: new Map(),
  /** @type {Map<string, OutboxEntry>} cmid -> pending message (the Connection keeps it, persisted per tab) */
  outbox: new Map(),
  /** @type {Upload[]} */
  uploads: [],
  // groups.js
  /** @type {Map<string, any>} conv -> {id, name, owner, members: [{user, role, joined}], dissolved} */
  groups: new Map(),
});
