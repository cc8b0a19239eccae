// The store's slices under node: what frames and actions do to the state (no socket, no server; the REST client is
// stubbed where a slice loads something).
import './browser_env.mjs';

import assert from 'node:assert/strict';
import { beforeEach, mock, test } from 'node:test';

import { CLIENT_FRAME, ERROR_CODE, SERVER_FRAME } from '../../core/web/js/protocol.js';
import { api, state } from '../../core/web/js/store/state.js';
import * as conversations from '../../core/web/js/store/conversations.js';
import * as groups from '../../core/web/js/store/groups.js';
import * as messages from '../../core/web/js/store/messages.js';
import * as replies from '../../core/web/js/store/replies.js';
import * as session from '../../core/web/js/store/session.js';
import * as ui from '../../core/web/js/store/ui.js';
import * as users from '../../core/web/js/store/users.js';

const ME = '1';
const BOB = '2';
const DIRECT = 'd:1:2';
const GROUP = 'g:77';
const realRequest = api.request;

let seqTs = 1_000;
function msg(seq, extra = {}) {
  seqTs += 1;
  return { id: `m${seq}`, conv: DIRECT, seq, from: BOB, device: 'd', cmid: `c${seq}`, kind: 'text', body: { text: `hi ${seq}` }, ts: seqTs, recalled: false, ...extra };
}

beforeEach(() => {
  messages.resetMessages();
  conversations.resetConversations();
  groups.resetGroups();
  users.resetUsers();
  ui.resetUi();
  state.toasts.splice(0);
  state.me = { id: ME, username: 'me', display_name: 'Me' };
  state.status.state = 'connected';
  state.now = Date.now();
  api.request = realRequest;
});

// ------------------------------------------------------------------------------------------------ ui
test('toasts keep the newest three and leave after their time', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    for (const n of [1, 2, 3, 4]) ui.toast(`t${n}`);
    assert.deepEqual(state.toasts.map((x) => x.text), ['t2', 't3', 't4']);
    mock.timers.tick(3000);
    assert.deepEqual(state.toasts, []);
  } finally {
    mock.timers.reset();
  }
});

test('modal, panel and lightbox change only through actions', () => {
  const ok = () => {};
  ui.confirmThen('sure?', ok);
  assert.deepEqual(state.modal, { type: 'confirm', text: 'sure?', ok });
  ui.closeModal();
  assert.equal(state.modal, null);
  ui.toggleGroupPanel();
  assert.equal(state.panel, 'group');
  ui.toggleGroupPanel();
  assert.equal(state.panel, null);
  ui.showLightbox('/f/1', 'a.png');
  assert.deepEqual(state.lightbox, { url: '/f/1', name: 'a.png' });
  ui.closeLightbox();
  assert.equal(state.lightbox, null);
});

// ------------------------------------------------------------------------------------------------ users
test('names: mine, a remark first, then the profile; presence unknown while not connected', () => {
  users.rememberUser({ id: BOB, username: 'bob', display_name: 'Bob' });
  assert.equal(users.userName(ME), 'Me');
  assert.equal(users.userName(BOB), 'Bob');
  state.friends.set(BOB, { user: { id: BOB, username: 'bob', display_name: 'Bob' }, remark: 'Bobby', online: true });
  assert.equal(users.userName(BOB), 'Bobby');
  assert.equal(users.presenceOf(BOB), true);
  users.applyPresence({ user: BOB, online: false, devices: 0 });
  assert.equal(users.presenceOf(BOB), false);
  state.status.state = 'waiting';
  assert.equal(users.presenceOf(BOB), null);
  assert.equal(users.directConv('10', '9'), 'd:9:10'); // ids compare as numbers
});

// ------------------------------------------------------------------------------------------------ conversations
test('unread counts the range after the read mark, less friend notices; my own message marks it read', () => {
  const c = conversations.ensureConv(DIRECT);
  assert.equal(c.peer, BOB);
  conversations.bumpConv(c, msg(1, { kind: 'system', from: '', body: { event: 'friend.accepted' } }));
  conversations.bumpConv(c, msg(2));
  conversations.bumpConv(c, msg(3));
  assert.equal(conversations.unreadOf(c), 2);
  assert.equal(conversations.totalUnread(), 2);
  conversations.bumpConv(c, msg(4, { from: ME }));
  assert.equal(conversations.unreadOf(c), 0);
  assert.equal(c.last.seq, 4);
});

test('group system messages: removed, re-added, renamed, dissolved', () => {
  const c = conversations.ensureConv(GROUP);
  const sys = (seq, body) => msg(seq, { conv: GROUP, kind: 'system', from: BOB, body });
  conversations.bumpConv(c, sys(1, { event: 'group.member_removed', users: [ME] }));
  assert.equal(c.left, true);
  conversations.bumpConv(c, sys(2, { event: 'group.members_added', users: [ME] }));
  assert.equal(c.left, false);
  conversations.bumpConv(c, sys(3, { event: 'group.renamed', name: 'New name' }));
  assert.equal(conversations.convTitle(c), 'New name');
  conversations.bumpConv(c, sys(4, { event: 'group.dissolved' }));
  assert.equal(c.dissolved, true);
});

test('conversations sort newest first', () => {
  const a = conversations.ensureConv('d:1:3');
  const b = conversations.ensureConv(DIRECT);
  conversations.bumpConv(a, msg(1, { conv: 'd:1:3', ts: 50 }));
  conversations.bumpConv(b, msg(1, { ts: 60 }));
  assert.deepEqual(conversations.sortedConvs().map((c) => c.conv), [DIRECT, 'd:1:3']);
});

// ------------------------------------------------------------------------------------------------ messages
test('a recall hides the message, its quotes and the list preview, and is never undone', () => {
  const c = conversations.ensureConv(DIRECT);
  messages.insertMessage(msg(1));
  messages.insertMessage(msg(2, { quote: { seq: 1, id: 'm1', from: BOB, text: 'hi 1' } }));
  conversations.bumpConv(c, msg(1));
  messages.insertMessage(msg(3, { kind: 'recall', body: { seq: 1 } }));
  const shown = messages.messagesOf(DIRECT);
  assert.deepEqual(shown.map((m) => m.seq), [1, 2]); // the recall event itself is not shown
  assert.equal(shown[0].recalled, true);
  assert.deepEqual(shown[0].body, {});
  assert.equal(shown[1].quote.recalled, true);
  assert.equal(c.last.recalled, true);
  messages.insertMessage(msg(1)); // a late copy of the original
  assert.equal(messages.messagesOf(DIRECT)[0].recalled, true);
});

test('receipts only move forward and give the ticks', () => {
  conversations.ensureConv(DIRECT);
  const mine = msg(5, { from: ME });
  assert.equal(messages.receiptOf(mine).status, 'sent');
  messages.applyReceipt({ conv: DIRECT, user: BOB, delivered: 5 });
  assert.equal(messages.receiptOf(mine).status, 'delivered');
  messages.applyReceipt({ conv: DIRECT, user: BOB, read: 6 });
  messages.applyReceipt({ conv: DIRECT, user: BOB, delivered: 2, read: 1 });
  assert.deepEqual(state.marks.get(DIRECT)[BOB], { delivered: 6, read: 6 });
  assert.equal(messages.receiptOf(mine).status, 'read');
});

test('group read counts come from the members other than me', () => {
  conversations.ensureConv(GROUP);
  state.groups.set(GROUP, { name: 'G', members: [ME, BOB, '3'].map((id) => ({ user: { id }, role: 'member' })) });
  const mine = msg(4, { conv: GROUP, from: ME });
  messages.applyReceipt({ conv: GROUP, user: BOB, read: 4 });
  assert.deepEqual(messages.receiptOf(mine), { status: 'sent', readers: 1, total: 2 });
  messages.applyReceipt({ conv: GROUP, user: '3', read: 9 });
  assert.deepEqual(messages.receiptOf(mine), { status: 'read', readers: 2, total: 2 });
});

test('typing shows for a while and ends with their message', () => {
  users.rememberUser({ id: BOB, username: 'bob', display_name: 'Bob' });
  conversations.ensureConv(DIRECT);
  messages.applyTyping({ conv: DIRECT, user: BOB });
  assert.deepEqual(messages.typingNames(DIRECT), ['Bob']);
  state.now = Date.now() + 6000;
  assert.deepEqual(messages.typingNames(DIRECT), []);
  state.now = Date.now();
  messages.applyTyping({ conv: DIRECT, user: BOB });
  session.handlers.onMessages(DIRECT, [msg(1)]);
  assert.deepEqual(messages.typingNames(DIRECT), []);
});

test('recall is offered for my own messages inside the window only', () => {
  state.config.recall_window_s = 120;
  const mine = msg(1, { from: ME, ts: Date.now() - 1000 });
  assert.equal(messages.canRecall(mine), true);
  assert.equal(messages.canRecall({ ...mine, from: BOB }), false);
  assert.equal(messages.canRecall({ ...mine, ts: Date.now() - 121_000 }), false);
  assert.equal(messages.canRecall({ ...mine, kind: 'system' }), false);
});

test('history pages in older messages and knows when there are none', async () => {
  const calls = [];
  api.request = async (method, path, body, opts) => {
    calls.push(opts.query.before);
    const top = opts.query.before ? opts.query.before - 1 : 60;
    const page = [];
    for (let s = Math.max(11, top - 39); s <= top; s++) page.push(msg(s));
    return { first_seq: 11, messages: page };
  };
  await messages.loadHistory(DIRECT);
  assert.equal(messages.hasOlder(DIRECT), true);
  await messages.loadHistory(DIRECT); // the first page is loaded once
  await messages.loadHistory(DIRECT, true);
  assert.deepEqual(calls, [undefined, 21]);
  assert.equal(messages.minLoaded(DIRECT), 11);
  assert.equal(messages.hasOlder(DIRECT), false);
  assert.equal(state.convs.get(DIRECT).lastSeq, 60);
});

test('history of a group I left marks it read-only', async () => {
  conversations.ensureConv(GROUP);
  api.request = async () => {
    throw Object.assign(new Error('no'), { code: ERROR_CODE.NOT_MEMBER, status: 403 });
  };
  await messages.loadHistory(GROUP);
  assert.equal(state.convs.get(GROUP).left, true);
});

// ------------------------------------------------------------------------------------------------ session
test('socket frames: messages land in order, my read on another device, a removal from a group', () => {
  session.handlers.onMessages(DIRECT, [msg(1), msg(2)]);
  const c = state.convs.get(DIRECT);
  assert.equal(c.lastSeq, 2);
  assert.deepEqual(messages.messagesOf(DIRECT).map((m) => m.seq), [1, 2]);
  session.handlers.onReceipt({ type: SERVER_FRAME.RECEIPT, conv: DIRECT, user: ME, read: 2 });
  assert.equal(c.readSeq, 2);
  assert.equal(state.marks.get(DIRECT), undefined);
  conversations.ensureConv(GROUP);
  session.handlers.onNotify('group.removed', { conv: GROUP });
  assert.equal(state.convs.get(GROUP).left, true);
});

test('a rate-limited typing frame is not worth a toast; other errors are', () => {
  session.handlers.onError({ code: ERROR_CODE.RATE_LIMITED, ref: CLIENT_FRAME.TYPING, message: '' });
  assert.equal(state.toasts.length, 0);
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    session.handlers.onError({ code: ERROR_CODE.FORBIDDEN, message: 'no' });
    assert.equal(state.toasts.length, 1);
    assert.equal(state.toasts[0].kind, 'error');
  } finally {
    mock.timers.reset();
  }
});

// ------------------------------------------------------------------------------------------------ replies, search
test('a reply carries a short quote and clears the reply bar when taken', () => {
  const long = msg(7, { body: { text: 'x'.repeat(200) } });
  replies.rs.replyTo.set(DIRECT, long);
  const reply = replies.takeReply(DIRECT);
  assert.equal(reply.seq, 7);
  assert.equal(reply.quote.text.length, 80);
  assert.equal(replies.rs.replyTo.has(DIRECT), false);
  assert.equal(replies.takeReply(DIRECT), null);
});

test('message search is debounced, and an answer to an older query is dropped', async () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  const pending = [];
  api.request = (method, path, body, opts) => new Promise((resolve) => pending.push({ q: opts.query.q, resolve }));
  try {
    replies.searchMessages('he');
    replies.searchMessages('hello');
    mock.timers.tick(250);
    assert.deepEqual(pending.map((p) => p.q), ['hello']);
    replies.searchMessages('bye');
    mock.timers.tick(250);
    pending[0].resolve({ messages: [msg(1)], next: null }); // 'hello' answers after 'bye' was asked
    pending[1].resolve({ messages: [msg(2), msg(3)], next: 'n' });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(replies.rs.search.results.map((m) => m.seq), [2, 3]);
    assert.equal(replies.rs.search.next, 'n');
    replies.searchMessages('');
    assert.deepEqual(replies.rs.search.results, []);
  } finally {
    mock.timers.reset();
  }
});
