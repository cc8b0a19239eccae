// The socket client against a fake WebSocket: the auth/sync handshake, in-order release, and what each close code
// makes it do (the codes come from protocol.js, generated from core/errors.py).
import './browser_env.mjs';

import assert from 'node:assert/strict';
import { afterEach, beforeEach, mock, test } from 'node:test';

import { Connection } from '../../core/web/js/connection.js';
import { CLIENT_FRAME, CLOSE_CODE, SERVER_FRAME } from '../../core/web/js/protocol.js';

class FakeSocket {
  static OPEN = 1;
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }

  send(text) {
    this.sent.push(JSON.parse(text));
  }

  close(code) {
    this.closedWith = code;
  }

  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen();
  }

  receive(frame) {
    this.onmessage({ data: JSON.stringify(frame) });
  }

  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose({ code, reason });
  }
}

function recorder() {
  const calls = [];
  const handlers = new Proxy({}, { get: (_, name) => (...args) => calls.push([name, ...args]) });
  return { calls, handlers };
}

const api = {
  me: { id: '1' },
  auth: { access_token: 'tok', access_expires: Date.now() + 3_600_000 },
  accessExpiresSoon: () => false,
  refresh: async () => {},
};

let conn;
let rec;

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 1_000_000 });
  globalThis.WebSocket = FakeSocket;
  globalThis.location = { protocol: 'http:', host: 'example.test' };
  FakeSocket.all = [];
  sessionStorage.clear();
  rec = recorder();
  conn = new Connection({ api, device: 'web-1', handlers: rec.handlers, status: {}, outbox: new Map() });
});

afterEach(() => {
  conn.stop();
  mock.timers.reset();
});

function connect() {
  conn.start();
  const ws = FakeSocket.all.at(-1);
  ws.open();
  ws.receive({ type: SERVER_FRAME.AUTH_OK, ack: 'three_state', heartbeat_s: 30, token_expires: Date.now() + 3_600_000, node: 'n1' });
  ws.receive({ type: SERVER_FRAME.SYNC_DONE, more: false });
  return ws;
}

test('authenticates, syncs from its cursors, then is connected', () => {
  const ws = connect();
  assert.equal(ws.url, 'ws://example.test/ws');
  assert.deepEqual(ws.sent.slice(0, 2), [
    { type: CLIENT_FRAME.AUTH, token: 'tok', device: 'web-1' },
    { type: CLIENT_FRAME.SYNC, cursors: {} },
  ]);
  assert.equal(conn.status.state, 'connected');
  assert.deepEqual(rec.calls.map((c) => c[0]), ['onSynced']);
});

test('pushes are released in order, once, and acknowledged cumulatively', () => {
  const ws = connect();
  const m = (seq) => ({ id: `m${seq}`, conv: 'd:1:2', seq, from: '2', device: 'x', cmid: `c${seq}`, kind: 'text', body: {}, ts: 1 });
  ws.receive({ type: SERVER_FRAME.SYNC_BATCH, conv: 'd:1:2', messages: [m(1)], last_seq: 1, first_seq: 1, more: false });
  ws.receive({ type: SERVER_FRAME.MESSAGE_NEW, msg: m(3) });
  ws.receive({ type: SERVER_FRAME.MESSAGE_NEW, msg: m(2) });
  ws.receive({ type: SERVER_FRAME.MESSAGE_NEW, msg: m(2) });
  const released = rec.calls.filter((c) => c[0] === 'onMessages').flatMap((c) => c[2].map((x) => x.seq));
  assert.deepEqual(released, [1, 2, 3]);
  mock.timers.tick(50);
  assert.deepEqual(ws.sent.filter((f) => f.type === CLIENT_FRAME.MESSAGE_ACK), [{ type: CLIENT_FRAME.MESSAGE_ACK, conv: 'd:1:2', seq: 3 }]);
});

test('a revoked session logs out; a replaced device stops without reconnecting', () => {
  connect().serverClose(CLOSE_CODE.SESSION_REVOKED, 'logged out');
  assert.deepEqual(rec.calls.at(-1), ['onLoggedOut', 'logged out']);
  assert.equal(conn.status.state, 'stopped');

  conn = new Connection({ api, device: 'web-1', handlers: rec.handlers, status: {}, outbox: new Map() });
  const before = FakeSocket.all.length;
  connect().serverClose(CLOSE_CODE.REPLACED);
  assert.equal(conn.status.state, 'replaced');
  mock.timers.tick(60_000);
  assert.equal(FakeSocket.all.length, before + 1);
});

test('a server restart reconnects at once, and a failed attempt backs off', () => {
  connect().serverClose(CLOSE_CODE.SERVICE_RESTART);
  assert.equal(conn.status.state, 'waiting');
  mock.timers.tick(0);
  assert.equal(FakeSocket.all.length, 2);
  FakeSocket.all[1].serverClose(CLOSE_CODE.GOING_AWAY);
  assert.equal(conn.status.state, 'waiting');
  assert.ok(conn.status.retryAt >= Date.now());
  assert.equal(conn.status.attempt, 2);
});

test('a silent server is dropped as a dead link', () => {
  const ws = connect();
  mock.timers.tick(30_000 * 2 + 5_250);
  assert.equal(ws.closedWith, CLOSE_CODE.HEARTBEAT_TIMEOUT);
  assert.ok(ws.sent.some((f) => f.type === CLIENT_FRAME.PING));
});
