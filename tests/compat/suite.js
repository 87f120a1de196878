// The compatibility suite: drives the real client packages of the original IM clients against a
// running im-server. Usage:
//   node suite.js <base-url> <client: sio2|sio4|weapp> <transport: websocket|polling|upgrade> <scenario>...
// Exits 0 when every scenario passed. A scenario that needs the server changed behind the
// clients' backs (a ban, a muted group) prints `@@hook <name> <json>` and waits for a line on
// stdin: the Rust test that started us makes the change and answers.
'use strict';
const assert = require('node:assert/strict');
const readline = require('node:readline');

const [, , BASE, CLIENT, TRANSPORT, ...SCENARIOS] = process.argv;
const TIMEOUT = 5000;
// Demo data (docs/protocol.md §6.3): user 2 is friends with muteuser (4) in conversation 2 and
// member3 (7) in conversation 3, member4 (8) in conversation 4; groups 1 and 2 talk in 27 and 28.
const ID = { user: 2, disabled: 3, muteuser: 4, member1: 5, member3: 7, member4: 8, member11: 15 };

// ---- clients ---------------------------------------------------------------------------------

const transports = { websocket: ['websocket'], polling: ['polling'], upgrade: ['polling', 'websocket'] }[TRANSPORT];
assert.ok(transports, `unknown transport ${TRANSPORT}`);

async function login(username) {
  const response = await fetch(`${BASE}/api/v1/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password: '123456' }),
  });
  const reply = await response.json();
  assert.equal(reply.statusCode, '0', `login ${username}: ${JSON.stringify(reply)}`);
  const cookie = response.headers.get('set-cookie').split(';')[0];
  return { id: reply.data.id, cookie, token: reply.data.token };
}

// Opens a socket the way each real client does; `session` is from login(), or null.
function open(session, { userId, via = 'cookie', scene = 'im' } = {}) {
  const query = { scene };
  if (userId !== undefined) query.userId = String(userId);
  else if (session) query.userId = String(session.id);
  const headers = session && via === 'cookie' ? { cookie: session.cookie } : {};
  if (session && via === 'token') query.token = session.token;
  if (CLIENT === 'sio2') {
    const io = require('sio2');
    return io(BASE, {
      query, transports, forceNew: true, reconnection: false,
      extraHeaders: headers, transportOptions: { polling: { extraHeaders: headers } },
    });
  }
  if (CLIENT === 'sio4') {
    const { io } = require('sio4');
    const options = { query, transports, forceNew: true, reconnection: false, extraHeaders: headers };
    if (session && via === 'auth') options.auth = { token: session.token };
    return io(BASE, options);
  }
  if (CLIENT === 'weapp') {
    // A mini-program has no cookie jar: it always uses the token, over WebSocket only.
    require('./wx-shim');
    const io = require('weapp.socket.io');
    if (session) query.token = session.token;
    return io(BASE, { query, transports: ['websocket'], forceNew: true, reconnection: false });
  }
  throw new Error(`unknown client ${CLIENT}`);
}

const sockets = [];
function connect(session, options) {
  const socket = open(session, options);
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connect timed out')), TIMEOUT);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    const refused = (error) => { clearTimeout(timer); reject(new Error(`refused: ${JSON.stringify(error && (error.message || error))}`)); };
    socket.once('connect_error', refused);
    socket.once('error', refused);
  });
}

// Resolves with the refusal when the server does not let the socket in.
function refused(session, options) {
  const socket = open(session, options);
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('neither refused nor connected')), TIMEOUT);
    const done = (error) => { clearTimeout(timer); socket.close(); resolve(error); };
    socket.once('connect_error', done);
    socket.once('error', done);
    // socket.io-client 2 reports a refused namespace as 'error', but may see 'connect' first.
    socket.once('connect', () => socket.once('disconnect', () => done('disconnected')));
  });
}

function ack(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), TIMEOUT);
    socket.emit(event, payload, (answer) => { clearTimeout(timer); resolve(answer); });
  });
}

function next(socket, event, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.off(event, listener); reject(new Error(`no ${event}`)); }, TIMEOUT);
    function listener(payload) {
      if (!accept(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    }
    socket.on(event, listener);
  });
}

function silence(socket, event, ms = 700) {
  return new Promise((resolve, reject) => {
    const listener = (payload) => reject(new Error(`unexpected ${event}: ${JSON.stringify(payload)}`));
    socket.on(event, listener);
    setTimeout(() => { socket.off(event, listener); resolve(); }, ms);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const lines = readline.createInterface({ input: process.stdin });
const answers = [];
const waiting = [];
lines.on('line', (line) => (waiting.length ? waiting.shift()(line) : answers.push(line)));
function hook(name, args) {
  process.stdout.write(`@@hook ${name} ${JSON.stringify(args)}\n`);
  return new Promise((resolve) => (answers.length ? resolve(answers.shift()) : waiting.push(resolve)));
}

const NEW = '/v1/im/new-message';
const text = (msg) => ({ type: 'text', msg });
const refusal = (message) => ({ statusCode: '1', errorMessage: message, data: null });
const FIELDS = ['body', 'conversationId', 'createdAt', 'fromId', 'id', 'seq', 'toId'];
const TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;

function assertDelivered(message, expected) {
  assert.deepEqual(Object.keys(message).sort(), FIELDS, JSON.stringify(message));
  assert.match(message.createdAt, TIME);
  assert.equal(typeof message.id, 'number');
  assert.equal(typeof message.seq, 'number');
  for (const [key, value] of Object.entries(expected)) assert.deepEqual(message[key], value, key);
}

function assertRefused(answer, event, message) {
  assert.deepEqual(answer, { event, ...refusal(message) });
}

// ---- scenarios -------------------------------------------------------------------------------

const scenarios = {
  // Connect, join, send, receive the broadcast, page the history.
  async chat() {
    const [user, member3] = await Promise.all([login('user'), login('member3')]);
    const a = await connect(user);
    const b = await connect(member3);
    assert.deepEqual(await ack(a, '/v1/im/join', { conversationId: 3 }), { conversationId: 3 });
    // The H5 client joins without asking for an ack, with the id as a string.
    b.emit('/v1/im/join', { conversationId: '3' });
    await sleep(200);
    const heard = next(b, NEW);
    const echoed = next(a, NEW);
    const sent = await ack(a, NEW, { type: 'chat', toId: ID.member3, fromId: ID.user, conversationId: 3, body: text('hi') });
    const expected = { body: text('hi'), fromId: ID.user, toId: ID.member3, conversationId: 3 };
    assertDelivered(sent, expected);
    assert.deepEqual(await heard, sent);
    assert.deepEqual(await echoed, sent);
    // The reply, without an ack, as the H5 client sends it.
    const reply = next(a, NEW);
    b.emit(NEW, { type: 'chat', toId: ID.user, fromId: ID.member3, conversationId: 3, body: { type: 'loc', addr: '杭州', lat: 30.1, lng: 120.1 } });
    assertDelivered(await reply, { fromId: ID.member3, toId: ID.user, seq: sent.seq + 1 });

    const page = await ack(a, '/v1/im/get-messages', { conversationId: 3, pageSize: 10, pageNumber: 1 });
    assert.deepEqual(Object.keys(page).sort(), ['conversationId', 'count', 'messages', 'pageNumber', 'pageSize']);
    assert.equal(page.conversationId, 3);
    assert.equal(page.count, 2);
    assert.equal(page.pageSize, 10);
    assert.equal(page.pageNumber, 1);
    assert.deepEqual(page.messages.map((m) => m.seq), [sent.seq + 1, sent.seq], 'newest first');
    assert.deepEqual(Object.keys(page.messages[1]).sort(), [...FIELDS, 'updatedAt'].sort());
    assert.deepEqual(page.messages[1].body, text('hi'));
    // String numbers are accepted; pageSize is clamped.
    const second = await ack(b, '/v1/im/get-messages', { conversationId: '3', pageSize: '1', pageNumber: '2' });
    assert.equal(second.pageSize, 1);
    assert.deepEqual(second.messages.map((m) => m.id), [sent.id]);
    const huge = await ack(b, '/v1/im/get-messages', { conversationId: 3, pageSize: 1e9 });
    assert.equal(huge.pageSize, 100);
    assert.equal(huge.pageNumber, 1);
  },

  // A group conversation reaches every joined member.
  async group() {
    const [user, member1] = await Promise.all([login('user'), login('member1')]);
    const a = await connect(user);
    const b = await connect(member1);
    await ack(a, '/v1/im/join', { conversationId: 27 });
    await ack(b, '/v1/im/join', { conversationId: 27 });
    const heard = next(b, NEW);
    const sent = await ack(a, NEW, { type: 'groupchat', toId: 1, fromId: ID.user, conversationId: 27, body: text('大家好') });
    assertDelivered(sent, { toId: 1, conversationId: 27, fromId: ID.user });
    assert.deepEqual(await heard, sent);
  },

  // Anonymous sockets and a spoofed userId are not let in; a token is.
  async auth() {
    await refused(null);
    await refused(null, { userId: ID.user });
    const user = await login('user');
    await refused(user, { userId: ID.member3 });
    await refused({ ...user, cookie: 'IM_SESS=' + 'ab'.repeat(32), token: 'ab'.repeat(32) });
    const viaToken = await connect(user, { via: 'token' });
    assert.deepEqual(await ack(viaToken, '/v1/im/join', { conversationId: 3 }), { conversationId: 3 });
    if (CLIENT === 'sio4') {
      const viaAuth = await connect(user, { via: 'auth' });
      assert.deepEqual(await ack(viaAuth, '/v1/im/join', { conversationId: 3 }), { conversationId: 3 });
    }
  },

  // A user may neither join nor read nor post to a conversation they are not part of.
  async foreign() {
    const [user, member1, member11] = await Promise.all([login('user'), login('member1'), login('member11')]);
    const a = await connect(user);
    await ack(a, '/v1/im/join', { conversationId: 5 });
    await ack(a, NEW, { type: 'chat', conversationId: 5, body: text('private') });
    const intruder = await connect(member1);
    assertRefused(await ack(intruder, '/v1/im/join', { conversationId: 5 }), '/v1/im/join', '不是此会话的成员');
    const history = await ack(intruder, '/v1/im/get-messages', { conversationId: 5 });
    assertRefused(history, '/v1/im/get-messages', '不是此会话的成员');
    const outsider = await connect(member11);
    assertRefused(await ack(outsider, '/v1/im/join', { conversationId: 27 }), '/v1/im/join', '不是此会话的成员');
    // Without an ack the refusal comes as /v1/im/error, and nothing reaches the room.
    const quiet = silence(a, NEW);
    const error = next(intruder, '/v1/im/error');
    intruder.emit(NEW, { type: 'chat', conversationId: 5, toId: ID.user, fromId: 9, body: text('spoof') });
    assertRefused(await error, NEW, '不是此会话的成员');
    await quiet;
    assert.equal((await ack(a, '/v1/im/get-messages', { conversationId: 5 })).count, 1);
  },

  // fromId and toId come from the session and the conversation, not from the client.
  async spoof() {
    const user = await login('user');
    const a = await connect(user);
    const sent = await ack(a, NEW, { type: 'groupchat', conversationId: 6, fromId: ID.member3, toId: 999, body: text('me') });
    assertDelivered(sent, { fromId: ID.user, toId: 10, conversationId: 6 });
  },

  // Body rules (docs/protocol.md §3.3) and malformed payloads: a clear error, nothing stored, still
  // connected.
  async invalid() {
    const user = await login('user');
    const a = await connect(user);
    const bad = [
      [{ conversationId: 7, body: 'text' }, 'body 必须是带字符串 type 的 JSON 对象'],
      [{ conversationId: 7, body: { msg: 'no type' } }, 'body 必须是带字符串 type 的 JSON 对象'],
      [{ conversationId: 7, body: { type: 7 } }, 'body 必须是带字符串 type 的 JSON 对象'],
      [{ conversationId: 7 }, 'body 必须是带字符串 type 的 JSON 对象'],
      [{ conversationId: 'x', body: text('a') }, 'conversationId 必须是会话编号'],
      [{ conversationId: -3, body: text('a') }, 'conversationId 必须是会话编号'],
      [{ conversationId: 7, body: { type: 'text', msg: 'x'.repeat(70 * 1024) } }, '消息内容过长'],
      [{ conversationId: 7, body: text('a'), clientMsgId: 12 }, 'clientMsgId 必须是 1 到 64 个字符的字符串'],
      ['a string', '参数必须是 JSON 对象'],
      [[1, 2], '参数必须是 JSON 对象'],
      [null, '参数必须是 JSON 对象'],
    ];
    for (const [payload, message] of bad) {
      assertRefused(await ack(a, NEW, payload), NEW, message);
    }
    assertRefused(await ack(a, '/v1/im/get-messages', { conversationId: 7, pageSize: 'ten' }), '/v1/im/get-messages', 'pageSize、pageNumber 和 since 必须是数字');
    assertRefused(await ack(a, '/v1/im/join', {}), '/v1/im/join', 'conversationId 必须是会话编号');
    // get-messages without an ack callback is not an error: nothing comes back.
    const quiet = silence(a, '/v1/im/error');
    a.emit('/v1/im/get-messages', { conversationId: 7 });
    await quiet;
    // Still connected and nothing was stored.
    assert.ok(a.connected);
    assert.equal((await ack(a, '/v1/im/get-messages', { conversationId: 7 })).count, 0);
  },

  // A user without the speak right, a muted group and a disbanded group accept no message.
  async muted() {
    const [user, muteuser] = await Promise.all([login('user'), login('muteuser')]);
    const m = await connect(muteuser);
    assertRefused(await ack(m, NEW, { type: 'chat', conversationId: 2, body: text('hello') }), NEW, '您已被禁言');
    const a = await connect(user);
    const before = (await ack(a, '/v1/im/get-messages', { conversationId: 27 })).count;
    await ack(a, NEW, { type: 'groupchat', conversationId: 27, body: text('before') });
    await hook('mute-group', { groupId: 1 });
    assertRefused(await ack(a, NEW, { type: 'groupchat', conversationId: 27, body: text('muted') }), NEW, '该群已禁言');
    // Reading a muted group's history still works.
    assert.equal((await ack(a, '/v1/im/get-messages', { conversationId: 27 })).count, before + 1);
    await hook('disable-group', { groupId: 2 });
    assertRefused(await ack(a, NEW, { type: 'groupchat', conversationId: 28, body: text('gone') }), NEW, '该群已解散');
    assertRefused(await ack(a, '/v1/im/join', { conversationId: 28 }), '/v1/im/join', '该群已解散');
    // A user deprived of speak while connected is refused on the next send.
    await ack(a, NEW, { type: 'chat', conversationId: 8, body: text('still can') });
    await hook('mute-user', { userId: ID.user });
    assertRefused(await ack(a, NEW, { type: 'chat', conversationId: 8, body: text('cannot') }), NEW, '您已被禁言');
    assert.ok(a.connected);
  },

  // A banned user is disconnected on every socket at once, and cannot come back.
  async ban() {
    const member3 = await login('member3');
    const first = await connect(member3);
    const second = await connect(member3);
    const gone = Promise.all([next(first, 'disconnect'), next(second, 'disconnect')]);
    await hook('ban', { userId: ID.member3 });
    await gone;
    await refused(member3);
  },

  // A retried send with the same clientMsgId is stored once and acked with the same message.
  async retry() {
    const [user, member9] = await Promise.all([login('user'), login('member9')]);
    const a = await connect(user);
    const b = await connect(member9);
    await ack(b, '/v1/im/join', { conversationId: 9 });
    const payload = { type: 'chat', conversationId: 9, body: text('once'), clientMsgId: 'c0ffee-1' };
    const heard = next(b, NEW);
    const first = await ack(a, NEW, payload);
    assert.deepEqual(await heard, first);
    const quiet = silence(b, NEW);
    const again = await ack(a, NEW, payload);
    assert.deepEqual(again, first);
    await quiet;
    const history = await ack(a, '/v1/im/get-messages', { conversationId: 9 });
    assert.equal(history.count, 1);
    // The same id in another conversation is a mistake, not a retry.
    assertRefused(await ack(a, NEW, { ...payload, conversationId: 10 }), NEW, 'clientMsgId 已用于另一会话');
  },

  // A client that reconnects asks for what it missed with `since`.
  async since() {
    const [user, member11] = await Promise.all([login('user'), login('member11')]);
    const a = await connect(user);
    let b = await connect(member11);
    await ack(b, '/v1/im/join', { conversationId: 11 });
    const heard = next(b, NEW);
    const first = await ack(a, NEW, { type: 'chat', conversationId: 11, body: text('1') });
    const last = (await heard).seq;
    b.close();
    const missed = [];
    for (const msg of ['2', '3', '4']) missed.push(await ack(a, NEW, { type: 'chat', conversationId: 11, body: text(msg) }));
    b = await connect(member11);
    await ack(b, '/v1/im/join', { conversationId: 11 });
    const resumed = await ack(b, '/v1/im/get-messages', { conversationId: 11, since: last, pageSize: 2 });
    assert.equal(resumed.since, first.seq);
    assert.equal(resumed.count, 3, 'three messages after since');
    assert.deepEqual(resumed.messages.map((m) => m.body.msg), ['2', '3'], 'oldest first, one page');
    const rest = await ack(b, '/v1/im/get-messages', { conversationId: 11, since: resumed.messages[1].seq });
    assert.deepEqual(rest.messages.map((m) => m.id), [missed[2].id]);
  },

  // Several devices and presence.
  async devices() {
    const [user, member12, member4] = await Promise.all([login('user'), login('member12'), login('member4')]);
    const phone = await connect(user);
    const laptop = await connect(user);
    // Friends hear when member4 comes online and when their last socket leaves.
    const isMember4 = (p) => p.userId === ID.member4;
    const online = Promise.all([next(phone, '/v1/im/online', isMember4), next(laptop, '/v1/im/online', isMember4)]);
    const m4 = await connect(member4);
    assert.deepEqual(await online, [{ userId: ID.member4, online: true }, { userId: ID.member4, online: true }]);
    const secondM4 = await connect(member4);
    const quiet = silence(laptop, '/v1/im/online', 500);
    secondM4.close();
    await quiet;
    const offline = next(laptop, '/v1/im/online', (p) => p.userId === ID.member4);
    m4.close();
    assert.deepEqual(await offline, { userId: ID.member4, online: false });
    // Every device of a user gets the messages of their rooms; the sender's other devices get
    // their own messages even without joining.
    await ack(phone, '/v1/im/join', { conversationId: 12 });
    await ack(laptop, '/v1/im/join', { conversationId: 12 });
    const b = await connect(member12);
    const both = Promise.all([next(phone, NEW), next(laptop, NEW)]);
    const sent = await ack(b, NEW, { type: 'chat', conversationId: 12, body: text('to all your devices') });
    assert.deepEqual(await both, [sent, sent]);
    const tablet = await connect(member12);
    const own = next(tablet, NEW);
    const mine = await ack(b, NEW, { type: 'chat', conversationId: 12, body: text('mine') });
    assert.deepEqual(await own, mine);
  },

  // The robot echoes the message, then answers on the same event; nothing is stored.
  async robot() {
    const user = await login('user');
    const a = await connect(user);
    const payload = { type: 'robot', conversationId: 'robot', fromId: ID.user, toId: 'robot', body: text('你好') };
    const heard = [];
    a.on(NEW, (m) => heard.push(m));
    const acked = await ack(a, NEW, payload);
    assert.deepEqual(acked, payload);
    for (let i = 0; i < 50 && heard.length < 2; i++) await sleep(100);
    assert.equal(heard.length, 2, JSON.stringify(heard));
    assert.deepEqual(heard[0], payload);
    assert.equal(heard[1].fromId, 'robot');
    assert.equal(heard[1].toId, ID.user);
    assert.equal(heard[1].body.type, 'text');
    assert.ok(heard[1].body.msg.length > 0 && heard[1].body.msg !== '你好', heard[1].body.msg);
    // The robot's conversation can be joined and paged like any other: it has no history.
    assert.deepEqual(await ack(a, '/v1/im/join', { conversationId: 'robot' }), { conversationId: 'robot' });
    assert.deepEqual(await ack(a, '/v1/im/get-messages', { conversationId: 'robot', pageSize: 20, pageNumber: 1 }),
      { conversationId: 'robot', pageSize: 20, pageNumber: 1, count: 0, messages: [] });
  },
};

async function main() {
  for (const name of SCENARIOS) {
    const scenario = scenarios[name];
    assert.ok(scenario, `unknown scenario ${name}`);
    const started = Date.now();
    try {
      await scenario();
      console.log(`ok ${CLIENT}/${TRANSPORT}/${name} (${Date.now() - started} ms)`);
    } finally {
      for (const socket of sockets.splice(0)) socket.close();
    }
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`FAILED ${CLIENT}/${TRANSPORT}: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
