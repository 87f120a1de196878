// The scale-out suite's clients: real socket.io-client 2.3.0 and 4 packages against several
// im-server processes, some connected straight to a process's port and some through nginx.
// Usage:
//   node cluster.js spread  '<config>'   one client and transport (config.client, config.transport):
//                                        sessions, group fan-out, presence and a ban across processes
//   node cluster.js traffic '<config>'   steady group traffic from a mix of clients while the Rust
//                                        test injects config.fault: kill | redis | postgres
// config: {nginx: url, processes: [url, ...], ...}. Exits 0 when every check passed. A step that
// needs the Rust test (kill a process, stop a service) prints `@@hook <name> <json>` and waits for
// a line on stdin. The figures of a run are printed as one `@@figures <json>` line.
'use strict';
const assert = require('node:assert/strict');
const readline = require('node:readline');

const [, , SCENARIO, CONFIG_JSON] = process.argv;
const CONFIG = JSON.parse(CONFIG_JSON);
const NGINX = CONFIG.nginx;
const PROCS = CONFIG.processes;
const TIMEOUT = 5000;

const NEW = '/v1/im/new-message';
const JOIN = '/v1/im/join';
const GET = '/v1/im/get-messages';
const ONLINE = '/v1/im/online';
// Demo data (docs/protocol.md §6.3): group 谈笑有鸿儒 (id 1) talks in conversation 27; its members are
// user, disabled, muteuser and member1..member10. `user` is friends with member3..member26.
const GROUP = 1;
const ROOM = 27;
const ID = { user: 2, member4: 8, member20: 24, member21: 25, member27: 31 };
const NOT_LOGGED_IN = '请登录';
const UNAVAILABLE = '服务暂时不可用，请稍后再试';

const now = () => Date.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (msg) => ({ type: 'text', msg });
const TRANSPORTS = { websocket: ['websocket'], polling: ['polling'] };

// ---- REST ------------------------------------------------------------------------------------

async function rest(base, method, path, session, body) {
  const headers = { 'content-type': 'application/json' };
  if (session) headers.cookie = session.cookie;
  const response = await fetch(`${base}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(TIMEOUT),
  });
  const answer = await response.text();
  try {
    return { status: response.status, reply: JSON.parse(answer), response };
  } catch {
    throw new Error(`${method} ${base}${path}: HTTP ${response.status} ${answer.slice(0, 100)}`);
  }
}

// Logs in on `base`; throws with the server's answer when refused.
async function login(base, username) {
  const { reply, response } = await rest(base, 'POST', '/api/v1/login', null, { username, password: '123456' });
  if (reply.statusCode !== '0') throw new Error(`login ${username}: ${JSON.stringify(reply)}`);
  const cookie = response.headers.get('set-cookie').split(';')[0];
  return { id: reply.data.id, name: username, cookie, token: reply.data.token };
}

async function friendOnline(base, session, friendId) {
  const { reply } = await rest(base, 'GET', '/api/v1/friend', session);
  assert.equal(reply.statusCode, '0', JSON.stringify(reply));
  const friend = reply.data.find((f) => f.id === friendId);
  assert.ok(friend, `friend ${friendId} listed`);
  return friend.online;
}

// Waits until `check` holds, for at most `ms`; fails with `what` otherwise.
async function eventually(what, check, ms = 3000) {
  const deadline = now() + ms;
  for (;;) {
    let last;
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    if (now() > deadline) throw new Error(`${what} did not happen within ${ms} ms${last ? `: ${last.message}` : ''}`);
    await sleep(100);
  }
}

// ---- sockets ---------------------------------------------------------------------------------

const sockets = [];

// Opens a socket of `lib` (sio2 | sio4) over `transport` to `base` with the session's cookie, or
// its token when `via` is 'token'.
function open(lib, transport, base, session, via = 'cookie') {
  const query = { scene: 'im', userId: String(session.id) };
  const headers = via === 'cookie' ? { cookie: session.cookie } : {};
  if (via === 'token') query.token = session.token;
  const options = { query, transports: TRANSPORTS[transport], forceNew: true, reconnection: false, extraHeaders: headers };
  let socket;
  if (lib === 'sio2') {
    socket = require('sio2')(base, { ...options, transportOptions: { polling: { extraHeaders: headers } } });
  } else if (lib === 'sio4') {
    socket = require('sio4').io(base, options);
  } else {
    throw new Error(`unknown client ${lib}`);
  }
  sockets.push(socket);
  return socket;
}

// Connects; rejects with `error.refusal` (the server's reason) when the server refused the
// session, or `error.transport` when the process could not be reached.
function connect(lib, transport, base, session, via) {
  const socket = open(lib, transport, base, session, via);
  return new Promise((resolve, reject) => {
    const fail = (error) => {
      clearTimeout(timer);
      socket.close();
      reject(error);
    };
    const timer = setTimeout(() => fail(Object.assign(new Error('connect timed out'), { transport: true })), TIMEOUT);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    // socket.io-client 4: a refusal is a connect_error carrying the server's message (and no
    // `type`); socket.io-client 2: a refusal is an 'error' event, an unreachable server a
    // connect_error.
    socket.once('connect_error', (error) => {
      const message = error && error.message;
      if (lib === 'sio4' && error && !error.type && message) fail(Object.assign(new Error(`refused: ${message}`), { refusal: message }));
      else fail(Object.assign(new Error(`unreachable: ${message || error}`), { transport: true }));
    });
    socket.once('error', (error) => {
      const message = typeof error === 'string' ? error : (error && (error.message || JSON.stringify(error)));
      fail(Object.assign(new Error(`refused: ${message}`), { refusal: message }));
    });
  });
}

const TIMED_OUT = Symbol('timed out');

// Emits with an ack; resolves with the answer, or TIMED_OUT after `ms`.
function ask(socket, event, payload, ms = TIMEOUT) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(TIMED_OUT), ms);
    socket.emit(event, payload, (answer) => { clearTimeout(timer); resolve(answer); });
  });
}

async function ack(socket, event, payload) {
  const answer = await ask(socket, event, payload);
  if (answer === TIMED_OUT) throw new Error(`no ack for ${event}`);
  return answer;
}

function next(socket, event, accept = () => true, ms = TIMEOUT) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.off(event, listener); reject(new Error(`no ${event}`)); }, ms);
    function listener(payload) {
      if (!accept(payload)) return;
      clearTimeout(timer);
      socket.off(event, listener);
      resolve(payload);
    }
    socket.on(event, listener);
  });
}

function silence(socket, event, accept, ms) {
  return new Promise((resolve, reject) => {
    const listener = (payload) => {
      if (accept(payload)) reject(new Error(`unexpected ${event}: ${JSON.stringify(payload)}`));
    };
    socket.on(event, listener);
    setTimeout(() => { socket.off(event, listener); resolve(); }, ms);
  });
}

// ---- hooks and figures -----------------------------------------------------------------------

const lines = readline.createInterface({ input: process.stdin });
const answers = [];
const waiting = [];
lines.on('line', (line) => (waiting.length ? waiting.shift()(line) : answers.push(line)));
function hook(name, args = {}) {
  process.stdout.write(`@@hook ${name} ${JSON.stringify(args)}\n`);
  return new Promise((resolve) => (answers.length ? resolve(answers.shift()) : waiting.push(resolve)));
}

function figures(values) {
  process.stdout.write(`@@figures ${JSON.stringify(values)}\n`);
}

// Every message of the room after `since`, oldest first, paged through `since` as a
// reconnecting client does.
async function historySince(socket, since) {
  const messages = [];
  for (;;) {
    const page = await ack(socket, GET, { conversationId: ROOM, since, pageSize: 100 });
    if (page.statusCode !== undefined) throw Object.assign(new Error(`history refused: ${page.errorMessage}`), { answer: page });
    messages.push(...page.messages);
    if (page.messages.length < 100) return messages;
    since = page.messages[page.messages.length - 1].seq;
  }
}

async function lastSeq(socket) {
  const page = await ack(socket, GET, { conversationId: ROOM, pageSize: 1 });
  return page.messages.length ? page.messages[0].seq : 0;
}

// ---- spread: one client library and transport over every process ------------------------------

async function spread() {
  const { client: lib, transport, run } = CONFIG;
  const targets = [...PROCS, NGINX];
  const where = (base) => (base === NGINX ? 'nginx' : `process ${PROCS.indexOf(base)}`);
  const result = { client: lib, transport };

  // 1. A session made through nginx opens a socket on every process; so does a token made on
  // the last process, used on the first.
  const user = await login(NGINX, 'user');
  const userSockets = [];
  for (const base of targets) {
    const socket = await connect(lib, transport, base, user).catch((e) => { throw new Error(`user on ${where(base)}: ${e.message}`); });
    assert.deepEqual(await ack(socket, JOIN, { conversationId: ROOM }), { conversationId: ROOM }, where(base));
    userSockets.push(socket);
  }
  const elsewhere = await login(PROCS[PROCS.length - 1], 'user');
  const byToken = await connect(lib, transport, PROCS[0], elsewhere, 'token');
  assert.deepEqual(await ack(byToken, JOIN, { conversationId: ROOM }), { conversationId: ROOM });
  byToken.close();

  // 2. Group fan-out: members spread over the processes and nginx, each sending one message
  // through their own process; every socket hears every message once, and all are stored.
  const names = ['member1', 'member2', 'member3', 'member5', 'member6', 'member7'];
  const sessions = await Promise.all(names.map((name, i) => login(targets[i % targets.length], name)));
  const memberSockets = [];
  for (const [i, session] of sessions.entries()) {
    const socket = await connect(lib, transport, targets[(i + 1) % targets.length], session);
    assert.deepEqual(await ack(socket, JOIN, { conversationId: ROOM }), { conversationId: ROOM });
    memberSockets.push(socket);
  }
  const everyone = [...userSockets, ...memberSockets];
  const before = await lastSeq(userSockets[0]);
  const heard = everyone.map((socket) => {
    const got = [];
    socket.on(NEW, (message) => message.conversationId === ROOM && got.push({ message, at: now() }));
    return got;
  });
  const tag = `spread-${lib}-${transport}-${run}-${now()}`;
  const started = now();
  const sent = await Promise.all(everyone.map((socket, i) =>
    ack(socket, NEW, { type: 'groupchat', toId: GROUP, conversationId: ROOM, body: text(`${tag} ${i}`), clientMsgId: `${tag}-${i}` })));
  for (const message of sent) {
    assert.equal(typeof message.id, 'number', JSON.stringify(message));
    assert.equal(message.conversationId, ROOM);
  }
  const sentIds = sent.map((m) => m.id).sort((a, b) => a - b);
  const socketNames = [...targets.map((base) => `user on ${where(base)}`), ...names.map((name, i) => `${name} on ${where(targets[(i + 1) % targets.length])}`)];
  await eventually('every socket hearing every message', () => heard.every((got) => got.length >= sent.length))
    .catch((error) => {
      const short = heard.map((got, i) => `${socketNames[i]}: ${got.length}/${sent.length}`);
      throw new Error(`${error.message}; heard: ${short.join(', ')}`);
    });
  await sleep(300); // nothing more may come: each message once
  for (const [i, got] of heard.entries()) {
    const ids = got.map((h) => h.message.id).sort((a, b) => a - b);
    assert.deepEqual(ids, sentIds, `${socketNames[i]} heard each message once`);
    for (const h of got) assert.deepEqual(h.message, sent.find((m) => m.id === h.message.id));
  }
  const stored = await historySince(memberSockets[2], before);
  assert.deepEqual(stored.map((m) => m.id).sort((a, b) => a - b), sentIds, 'all stored, nothing else');
  result.fanoutSockets = everyone.length;
  result.fanoutDeliveries = heard.reduce((n, got) => n + got.length, 0);
  result.fanoutMs = Math.max(...heard.flat().map((h) => h.at)) - started;

  // 3. Presence across processes: member4 online on process 2 is heard by user's sockets on
  // every process, and the friend list says so wherever it is asked.
  await eventually('member4 offline at start', async () => {
    for (const base of PROCS) if (await friendOnline(base, user, ID.member4)) return false;
    return true;
  }, 10000);
  const isMember4 = (p) => p.userId === ID.member4;
  const cameOnline = userSockets.map((socket) => next(socket, ONLINE, isMember4));
  const member4 = await login(PROCS[1], 'member4');
  const phone = await connect(lib, transport, PROCS[2], member4);
  for (const payload of await Promise.all(cameOnline)) assert.deepEqual(payload, { userId: ID.member4, online: true });
  for (const base of PROCS) assert.equal(await friendOnline(base, user, ID.member4), true, `online asked on ${where(base)}`);
  // A second device on another process: closing the first changes nothing.
  const laptop = await connect(lib, transport, PROCS[0], member4);
  // The server records a socket's presence just after it sends the CONNECT packet: closing the
  // phone in that moment makes the friends hear offline, then online (the server re-reads the
  // register before announcing, so the last word is the right one). The Rust side answers this
  // hook once Redis holds both devices: what is checked here is that a second device keeps its
  // user online, silently.
  await hook('presence-recorded', { userId: ID.member4, sockets: 2 });
  const quiet = Promise.all(userSockets.map((socket) => silence(socket, ONLINE, isMember4, 800)));
  phone.close();
  await quiet;
  for (const base of PROCS) assert.equal(await friendOnline(base, user, ID.member4), true, `still online on ${where(base)}`);
  const wentOffline = userSockets.map((socket) => next(socket, ONLINE, isMember4));
  laptop.close();
  for (const payload of await Promise.all(wentOffline)) assert.deepEqual(payload, { userId: ID.member4, online: false });
  for (const base of PROCS) assert.equal(await friendOnline(base, user, ID.member4), false, `offline asked on ${where(base)}`);

  // 4. A ban given on process 0 drops the user's sockets on every process at once.
  const target = `member${27 + run}`;
  const banned = await login(NGINX, target);
  const bannedSockets = [];
  for (const base of targets) bannedSockets.push(await connect(lib, transport, base, banned));
  const dropped = bannedSockets.map((socket) => new Promise((resolve) => socket.once('disconnect', () => resolve(now()))));
  const admin = await login(PROCS[0], 'admin');
  const banAt = now();
  const { reply } = await rest(PROCS[0], 'PUT', '/api/v1/admin/users/disabled', admin, { id: ID.member27 + run, disabled: true });
  assert.equal(reply.statusCode, '0', JSON.stringify(reply));
  const droppedAt = await Promise.race([
    Promise.all(dropped),
    sleep(2000).then(() => {
      const left = targets.filter((base, i) => bannedSockets[i].connected).map(where);
      throw new Error(`banned user still connected after 2 s on: ${left.join(', ')}`);
    }),
  ]);
  result.banMs = Math.max(...droppedAt) - banAt;
  const again = await connect(lib, transport, PROCS[1], banned).then(() => null, (error) => error);
  assert.ok(again && again.refusal, `a banned user's socket is refused: ${again && again.message}`);
  const { reply: relogin } = await rest(PROCS[2], 'POST', '/api/v1/login', null, { username: target, password: '123456' });
  assert.notEqual(relogin.statusCode, '0', 'a banned user cannot log in');
  // Lifting the ban lets them back in, on any process.
  const { reply: lifted } = await rest(PROCS[1], 'PUT', '/api/v1/admin/users/disabled', admin, { id: ID.member27 + run, disabled: false });
  assert.equal(lifted.statusCode, '0', JSON.stringify(lifted));
  (await connect(lib, transport, PROCS[2], await login(PROCS[0], target))).close();

  figures(result);
  console.log(`ok spread/${lib}/${transport}`);
}

// ---- traffic: steady group traffic through a fault ---------------------------------------------

const FAULT = CONFIG.fault;
const SEND_EVERY_MS = 100;
const PROBE_EVERY_MS = 250;
const ACK_WAIT_MS = 3000;
// Who takes part: where each connects first, with which client and transport, and whether they
// send (the others probe with get-messages, so they too notice a lost session).
const MEMBERS = [
  { name: 'user', lib: 'sio4', transport: 'websocket', at: 0, sends: true },
  { name: 'member1', lib: 'sio2', transport: 'websocket', at: 1, sends: true },
  { name: 'member2', lib: 'sio4', transport: 'polling', at: 2, sends: true },
  { name: 'member3', lib: 'sio2', transport: 'polling', at: 2, sends: false },
  { name: 'member5', lib: 'sio2', transport: 'websocket', at: 'nginx', sends: true },
  { name: 'member6', lib: 'sio4', transport: 'polling', at: 'nginx', sends: false },
  { name: 'member7', lib: 'sio4', transport: 'websocket', at: 'nginx', sends: true },
  { name: 'member8', lib: 'sio2', transport: 'polling', at: 'nginx', sends: true },
  { name: 'member9', lib: 'sio2', transport: 'polling', at: 0, sends: true },
  { name: 'member10', lib: 'sio4', transport: 'polling', at: 1, sends: false },
];

let stopping = false;
let baseline = 0;

class Member {
  constructor(spec) {
    Object.assign(this, spec);
    this.base = spec.at === 'nginx' ? NGINX : PROCS[spec.at];
    this.live = new Map(); // id -> {seq, at}: heard on a socket
    this.fetched = new Map(); // id -> seq: fetched with `since` after a reconnect
    this.acked = []; // {id, seq, at, ms}
    this.refused = []; // {at, ms, message}
    this.unanswered = []; // {at, connected}
    this.downs = []; // {at, reason}
    this.ups = []; // {downAt, upAt, via}
    this.relogins = 0;
    this.socket = null;
    this.recovering = null;
  }

  where() {
    return this.base === NGINX ? 'nginx' : `process ${PROCS.indexOf(this.base)}`;
  }

  async start() {
    this.session = await login(NGINX, this.name);
    await this.open();
  }

  async open() {
    const socket = await connect(this.lib, this.transport, this.base, this.session);
    socket.on(NEW, (m) => {
      if (m.conversationId === ROOM && !this.live.has(m.id)) this.live.set(m.id, { seq: m.seq, at: now() });
    });
    socket.on('disconnect', (reason) => this.down(socket, reason));
    const joined = await ask(socket, JOIN, { conversationId: ROOM }, ACK_WAIT_MS);
    if (!joined || joined.conversationId !== ROOM) {
      socket.close();
      throw Object.assign(new Error(`join: ${JSON.stringify(joined)}`), { refusal: joined && joined.errorMessage });
    }
    // Dropped while joining: its disconnect went unheard (it was not this.socket yet).
    if (!socket.connected) throw Object.assign(new Error('dropped while joining'), { transport: true });
    this.socket = socket;
  }

  down(socket, reason) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.downs.push({ at: now(), reason });
    socket.close();
    this.recover();
  }

  // Comes back as a real client would: checks its session (logging in again if it is gone),
  // reconnects (through nginx once its own process is unreachable), joins, and fetches what it
  // missed with `since`.
  recover() {
    if (this.recovering || stopping) return this.recovering;
    const downAt = now();
    this.recovering = (async () => {
      for (;;) {
        try {
          await this.ensureSession();
          await this.open();
          await this.catchUp();
          this.ups.push({ downAt, upAt: now(), via: this.base === NGINX ? 'nginx' : 'direct' });
          break;
        } catch (error) {
          this.lastError = error.message;
          if (this.socket) { const s = this.socket; this.socket = null; s.close(); }
          if (error.transport) this.base = NGINX;
          await sleep(200);
        }
      }
      this.recovering = null;
    })();
    return this.recovering;
  }

  async ensureSession() {
    const { reply } = await rest(NGINX, 'GET', '/api/v1/currentUser', this.session);
    if (reply.statusCode === '0') return;
    if (reply.errorMessage !== NOT_LOGGED_IN) throw new Error(`session check: ${JSON.stringify(reply)}`);
    this.session = await login(NGINX, this.name);
    this.relogins += 1;
  }

  // The highest seq up to which this member has every message.
  contiguous() {
    const seqs = new Set([...this.live.values()].map((v) => v.seq).concat([...this.fetched.values()]));
    let seq = baseline;
    while (seqs.has(seq + 1)) seq += 1;
    return seq;
  }

  async catchUp() {
    for (const m of await historySince(this.socket, this.contiguous())) this.fetched.set(m.id, m.seq);
  }

  // An answer that says the session is gone sends the member through recovery.
  sessionGone(answer) {
    if (answer && answer.errorMessage === NOT_LOGGED_IN && this.socket) this.down(this.socket, 'session gone');
  }

  async loop() {
    let n = 0;
    let due = now();
    while (!stopping) {
      const socket = this.socket;
      if (socket && this.sends) {
        n += 1;
        const at = now();
        const payload = { type: 'groupchat', toId: GROUP, conversationId: ROOM, body: text(`${this.name} ${n}`), clientMsgId: `${this.name}-${n}` };
        const answer = await ask(socket, NEW, payload, ACK_WAIT_MS);
        const ms = now() - at;
        if (answer === TIMED_OUT) this.unanswered.push({ at, connected: socket.connected && socket === this.socket });
        else if (typeof answer.id === 'number') this.acked.push({ id: answer.id, seq: answer.seq, at, ms });
        else {
          this.refused.push({ at, ms, message: answer.errorMessage });
          this.sessionGone(answer);
        }
      } else if (socket) {
        const at = now();
        const answer = await ask(socket, GET, { conversationId: ROOM, pageSize: 1 }, ACK_WAIT_MS);
        const ms = now() - at;
        if (answer === TIMED_OUT) this.unanswered.push({ at, connected: socket.connected && socket === this.socket });
        else if (answer.statusCode !== undefined) {
          this.refused.push({ at, ms, message: answer.errorMessage, probe: true });
          this.sessionGone(answer);
        }
      }
      due += this.sends ? SEND_EVERY_MS : PROBE_EVERY_MS;
      await sleep(Math.max(0, due - now()));
      if (due < now() - 1000) due = now(); // after a long wait, no burst to catch up
    }
  }
}

// Polls every process's /readyz: when each first answered 503 once the fault was injected, and
// 200 once the service was restored.
function watchReadiness(processes) {
  const state = processes.map((base) => ({ base, first503: null, first200After: null, body503: null, maxMs: 0 }));
  let from = null;
  let to = null;
  let running = true;
  const done = Promise.all(state.map(async (s) => {
    while (running) {
      const at = now();
      try {
        const response = await fetch(`${s.base}/readyz`, { signal: AbortSignal.timeout(5000) });
        const body = await response.json();
        s.maxMs = Math.max(s.maxMs, now() - at);
        if (response.status === 503 && from !== null && at >= from && s.first503 === null) { s.first503 = at; s.body503 = body; }
        if (response.status === 200 && to !== null && at >= to && s.first200After === null) s.first200After = at;
      } catch (error) {
        s.lastError = error.message;
      }
      await sleep(100);
    }
  }));
  return {
    state,
    faultAt(at) { from = at; },
    restoredAt(at) { to = at; },
    async stop() { running = false; await done; },
  };
}

async function traffic() {
  assert.ok(['kill', 'redis', 'postgres'].includes(FAULT), `unknown fault ${FAULT}`);
  const members = MEMBERS.map((spec) => new Member(spec));
  for (const member of members) await member.start();
  baseline = await lastSeq(members[0].socket);

  // Presence across a crash: member20 is only on the process that dies, member21 also on another.
  let presence = null;
  if (FAULT === 'kill') {
    const watcher = members[0]; // user, on process 0
    const member20 = await login(NGINX, 'member20');
    const member21 = await login(NGINX, 'member21');
    const cameOnline = (id) => next(watcher.socket, ONLINE, (p) => p.userId === id && p.online);
    let online = cameOnline(ID.member20);
    await connect('sio4', 'websocket', PROCS[2], member20);
    await online;
    online = cameOnline(ID.member21);
    await connect('sio2', 'websocket', PROCS[2], member21);
    await online;
    // From here on member21 has no news: not their second socket, not the crash.
    presence = { watcher, heard: [] };
    watcher.socket.on(ONLINE, (p) => presence.heard.push({ ...p, at: now() }));
    await connect('sio4', 'polling', PROCS[1], member21);
    for (const base of [PROCS[0], PROCS[1]]) {
      assert.equal(await friendOnline(base, watcher.session, ID.member20), true);
      assert.equal(await friendOnline(base, watcher.session, ID.member21), true);
    }
  }

  const readiness = FAULT === 'kill' ? null : watchReadiness(PROCS);
  const loops = members.map((member) => member.loop());
  const trafficAt = now();
  await sleep(1500);

  const faultAt = now();
  if (readiness) readiness.faultAt(faultAt);
  await hook('fault', { fault: FAULT });
  const faultDoneAt = now();
  let restoredAt = faultDoneAt;
  if (FAULT !== 'kill') {
    await sleep(3000);
    await hook('restore', { fault: FAULT });
    restoredAt = now();
    readiness.restoredAt(restoredAt);
  }

  // Recovered: every member is connected again and has heard, live, a message acked after the
  // restore (so messages cross processes again).
  let recoveredAt = null;
  const recoveryDeadline = now() + 30000;
  while (recoveredAt === null && now() < recoveryDeadline) {
    await sleep(100);
    if (!members.every((m) => m.socket && !m.recovering)) continue;
    const fresh = members.flatMap((m) => m.acked).filter((a) => a.at >= restoredAt);
    const everywhere = fresh.filter((a) => members.every((m) => m.live.has(a.id)));
    if (everywhere.length) {
      recoveredAt = Math.min(...everywhere.map((a) => Math.max(...members.map((m) => m.live.get(a.id).at))));
    }
  }
  if (recoveredAt === null) {
    const fresh = members.flatMap((m) => m.acked).filter((a) => a.at >= restoredAt);
    const state = members.map((m) => ({
      name: m.name, on: m.where(), up: !!m.socket, error: m.lastError,
      heardLive: `${fresh.filter((a) => m.live.has(a.id)).length}/${fresh.length}`,
    }));
    assert.fail(`service did not resume within 30 s (no message acked after the restore reached every client live): ${JSON.stringify(state)}`);
  }

  if (presence) {
    // Users only on the dead process go offline once its heartbeat expires; the others stay.
    const offline = () => presence.heard.find((p) => p.userId === ID.member20 && !p.online);
    await eventually('member20 going offline after the crash', () => offline(), CONFIG.presenceTtl * 1000 + 10000);
    presence.offlineMs = offline().at - faultDoneAt;
  }
  await sleep(1000);
  stopping = true;
  await Promise.all(loops);
  await sleep(1000); // deliveries in flight land
  if (readiness) await readiness.stop();

  // Final catch-up of every member, then the checks.
  for (const m of members) {
    if (m.recovering) await m.recovering;
    assert.ok(m.socket, `${m.name} connected at the end: ${m.lastError}`);
    await m.catchUp();
  }
  const stored = await historySince(members[0].socket, baseline);
  const storedIds = new Set(stored.map((m) => m.id));
  const acked = members.flatMap((m) => m.acked);
  const ackedIds = acked.map((a) => a.id);
  const missing = (m, ids) => ids.filter((id) => !m.live.has(id) && !m.fetched.has(id));
  const lostFromStore = ackedIds.filter((id) => !storedIds.has(id));
  assert.deepEqual(lostFromStore, [], 'every acknowledged message is stored');
  assert.equal(new Set(ackedIds).size, ackedIds.length, 'each acknowledged message once');
  for (const m of members) {
    assert.deepEqual(missing(m, ackedIds), [], `${m.name} has every acknowledged message (live or with since)`);
    const unstored = [...m.live.keys()].filter((id) => !storedIds.has(id));
    assert.deepEqual(unstored, [], `${m.name} heard only stored messages`);
  }

  const refused = members.flatMap((m) => m.refused);
  const unanswered = members.flatMap((m) => m.unanswered);
  const result = {
    fault: FAULT,
    members: members.length,
    trafficMs: now() - trafficAt,
    acked: acked.length,
    ackedIds,
    stored: stored.length,
    refused: refused.filter((r) => !r.probe).length,
    probesRefused: refused.filter((r) => r.probe).length,
    refusedBy: refused.reduce((by, r) => ({ ...by, [r.message]: (by[r.message] || 0) + 1 }), {}),
    maxRefusalMs: refused.length ? Math.max(...refused.map((r) => r.ms)) : 0,
    unanswered: unanswered.length,
    unansweredConnected: unanswered.filter((u) => u.connected).length,
    maxAckMs: Math.max(...acked.map((a) => a.ms)),
    recoveryMs: recoveredAt - restoredAt,
    outageMs: FAULT === 'kill' ? undefined : restoredAt - faultAt,
    disconnected: members.filter((m) => m.downs.length).map((m) => m.name),
    reconnects: members.reduce((n, m) => n + m.ups.length, 0),
    viaNginx: members.filter((m) => m.ups.some((u) => u.via === 'nginx')).map((m) => m.name),
    maxReconnectMs: Math.max(0, ...members.flatMap((m) => m.ups.map((u) => u.upAt - u.downAt))),
    relogins: members.reduce((n, m) => n + m.relogins, 0),
    fetchedWithSince: members.reduce((n, m) => n + [...m.fetched.keys()].filter((id) => !m.live.has(id)).length, 0),
    missedLive: members.reduce((n, m) => n + ackedIds.filter((id) => !m.live.has(id)).length, 0),
    lost: members.reduce((n, m) => n + missing(m, ackedIds).length, 0) + lostFromStore.length,
  };
  assert.ok(result.acked > 0, 'messages were acknowledged');

  if (FAULT === 'kill') {
    // Clients of the surviving processes noticed nothing: no disconnect, every message live.
    for (const m of members.filter((m) => m.at === 0 || m.at === 1)) {
      assert.deepEqual(m.downs, [], `${m.name} on ${m.where()} stayed connected`);
      assert.deepEqual(ackedIds.filter((id) => !m.live.has(id)), [], `${m.name} heard every message live`);
    }
    // So did every client nginx had sent to a surviving process.
    for (const m of members.filter((m) => m.downs.length === 0)) {
      assert.deepEqual(ackedIds.filter((id) => !m.live.has(id)), [], `${m.name}, never dropped, heard every message live`);
    }
    // Clients of the dead process came back through nginx, with the same session.
    for (const m of members.filter((m) => m.at === 2)) {
      assert.ok(m.downs.length > 0, `${m.name} was dropped with its process`);
      assert.ok(m.ups.some((u) => u.via === 'nginx'), `${m.name} came back through nginx`);
    }
    assert.equal(result.relogins, 0, 'sessions outlive a process');
    // Presence: member20 went offline after the TTL; member21, still on process 1, never did.
    const ttlMs = CONFIG.presenceTtl * 1000;
    assert.ok(presence.offlineMs <= ttlMs + ttlMs / 3 + 3000, `member20 offline after ${presence.offlineMs} ms`);
    assert.deepEqual(presence.heard.filter((p) => p.userId === ID.member21), [], 'member21 stayed online');
    for (const base of [PROCS[0], PROCS[1]]) {
      assert.equal(await friendOnline(base, presence.watcher.session, ID.member20), false, 'member20 offline in the friend list');
      assert.equal(await friendOnline(base, presence.watcher.session, ID.member21), true, 'member21 online in the friend list');
    }
    result.presenceOfflineMs = presence.offlineMs;
  } else {
    // An outage is answered, fast: no send or probe of a connected socket went unanswered.
    assert.equal(result.unansweredConnected, 0, `events unanswered on connected sockets: ${JSON.stringify(unanswered)}`);
    assert.ok(result.maxRefusalMs < 2500, `a refusal took ${result.maxRefusalMs} ms`);
    assert.ok(refused.length > 0, 'events were refused during the outage');
    // ... with the error that says so (or, once Redis is back empty, that the session is gone).
    const unclear = refused.filter((r) => r.message !== UNAVAILABLE && !(FAULT === 'redis' && r.message === NOT_LOGGED_IN));
    assert.deepEqual(unclear, [], 'every refusal says the service is unavailable');
    const service = FAULT === 'redis' ? 'redis' : 'database';
    for (const s of readiness.state) {
      assert.ok(s.first503 !== null, `${s.base}/readyz never answered 503: ${s.lastError || ''}`);
      assert.equal(s.body503[service], 'unavailable', JSON.stringify(s.body503));
      assert.ok(s.first200After !== null, `${s.base}/readyz not 200 again after the restore`);
    }
    result.readyz503AfterMs = Math.max(...readiness.state.map((s) => s.first503 - faultAt));
    result.readyz200AfterMs = Math.max(...readiness.state.map((s) => s.first200After - restoredAt));
    result.readyzMaxMs = Math.max(...readiness.state.map((s) => s.maxMs));
    if (FAULT === 'redis') assert.ok(result.relogins >= members.length, 'Redis keeps nothing: everyone logs in again');
  }
  figures(result);
  console.log(`ok traffic/${FAULT}`);
}

const scenarios = { spread, traffic };

async function main() {
  const scenario = scenarios[SCENARIO];
  assert.ok(scenario, `unknown scenario ${SCENARIO}`);
  try {
    await scenario();
  } finally {
    stopping = true;
    for (const socket of sockets.splice(0)) socket.close();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`FAILED ${SCENARIO}: ${error && error.stack ? error.stack : error}`);
    process.exit(1);
  },
);
