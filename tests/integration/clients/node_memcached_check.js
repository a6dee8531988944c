// node_memcached_check: a fixed script of operations through Node's
// `memcached` package (the npm registry's memcached, installed by
// test_clients_ecosystem.py under build/) against one address, one line per
// operation on stdout.
//
//   NODE_PATH=<dir>/node_modules node node_memcached_check.js HOST:PORT
//
// The output is deterministic for a given server behaviour (CAS ids are
// masked, maps printed in key order), so two runs, one straight to memcached
// and one through memrelay, must print the same lines.
//
// The client keeps values as strings split on CRLF and escapes CR and LF in
// values with a backslash, so a value holding "\r\n" does not survive it even
// against memcached: values here have no CR or LF. Buffers are sent as
// latin1 strings with a UTF-8 length, so binary values stay below 0x80.
'use strict';

const crypto = require('crypto');
const Memcached = require('memcached');

const addr = process.argv[2];
if (process.argv.length !== 3 || !/^.+:\d+$/.test(addr)) {
  process.stderr.write('usage: node node_memcached_check.js HOST:PORT\n');
  process.exit(2);
}

const mc = new Memcached(addr, {
  timeout: 5000, retries: 0, failures: 0, retry: 1000, idle: 30000, poolSize: 1, reconnect: 1000,
});

function say(step, result) {
  process.stdout.write(step + ': ' + result + '\n');
}

function md5(s) {
  return crypto.createHash('md5').update(s).digest('hex');
}

// A value: quoted with \xNN escapes (of its UTF-8 bytes) when short, length and digest when long.
function show(v) {
  if (v === undefined) return 'miss';
  if (Buffer.isBuffer(v)) return 'Buffer(' + show(v.toString('latin1')) + ')';
  if (typeof v !== 'string') return typeof v + '(' + JSON.stringify(v) + ')';
  const bytes = Buffer.from(v, 'utf8');
  if (bytes.length > 64) return 'len=' + bytes.length + ' md5=' + md5(bytes);
  let out = '"';
  for (const c of bytes) {
    if (c === 0x22 || c === 0x5c) out += '\\' + String.fromCharCode(c);
    else if (c < 0x20 || c > 0x7e) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

// Each call as a promise of [err, result].
function call(method, ...args) {
  return new Promise((resolve) => {
    mc[method](...args, (err, result) => resolve([err, result]));
  });
}

// A callback's (err, result) in the script's words.
function word([err, result], falseWord) {
  if (err) {
    if (err.notStored) return 'notstored';
    const msg = Array.isArray(err) ? err.map((e) => String(e.message || e)).join('; ') : String(err.message || err);
    return 'error(' + msg + ')';
  }
  if (result === true) return 'ok';
  if (result === false) return falseWord;
  return String(result);
}

async function get(step, key) {
  const r = await call('get', key);
  say(step, r[0] ? word(r) : show(r[1]));
  return r[1];
}

// n bytes of a fixed pseudo-random sequence (the same LCG as the other drivers), as letters
function pattern(n, seed) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = 0x41 + ((x >>> 16) & 0xff) % 58;
  }
  return out.toString('latin1');
}

function multiLine(items, keys) {
  let right = 0;
  keys.forEach((k, i) => { if (items[k] === 'value-' + i) right++; });
  return Object.keys(items).length + ' hits, ' + right + ' right';
}

function digest(items) {
  return md5(Object.keys(items).sort().map((k) => k + '=' + items[k] + ';').join(''));
}

async function main() {
  // set / get / delete
  say('set a', word(await call('set', 'eco:a', '1', 0), 'notstored'));
  await get('get a', 'eco:a');
  await get('get missing', 'eco:missing');
  say('delete a', word(await call('del', 'eco:a'), 'notfound'));
  say('delete a again', word(await call('del', 'eco:a'), 'notfound'));
  await get('get a after delete', 'eco:a');
  say('set empty value', word(await call('set', 'eco:empty', '', 0), 'notstored'));
  await get('get empty value', 'eco:empty');
  say('set number', word(await call('set', 'eco:num', 12345, 0), 'notstored'));
  await get('get number', 'eco:num');
  say('set object (JSON)', word(await call('set', 'eco:obj', { x: 1, y: [2, 3] }, 0), 'notstored'));
  await get('get object (JSON)', 'eco:obj');

  // get-multi: 100 keys, 60 stored (the first two of every five missing, the last key stored), 40 never stored
  const keys = [];
  let stored = 0;
  for (let i = 0; i < 100; i++) {
    keys.push('eco:gm:' + i);
    if (i % 5 >= 2 && (await call('set', keys[i], 'value-' + i, 0))[1] === true) stored++;
  }
  say('getmulti set 60', stored + ' stored');
  let r = await call('getMulti', keys);
  say('getmulti 100 keys', r[0] ? word(r) : multiLine(r[1], keys));
  say('getmulti digest', r[0] ? word(r) : digest(r[1]));
  // many requests in flight at once on the one connection
  const sets = [];
  for (let i = 0; i < 50; i++) sets.push(call('set', 'eco:par:' + i, 'p'.repeat(i + 1), 0));
  const setResults = await Promise.all(sets);
  say('50 sets in flight', setResults.filter((x) => x[1] === true).length + ' ok');
  const gets = [];
  for (let i = 0; i < 50; i++) gets.push(call('get', 'eco:par:' + i));
  const getResults = await Promise.all(gets);
  say('50 gets in flight', getResults.filter((x, i) => x[1] === 'p'.repeat(i + 1)).length + ' right');

  // incr / decr
  say('set n 10', word(await call('set', 'eco:n', '10', 0), 'notstored'));
  say('incr n 5', word(await call('incr', 'eco:n', 5), 'notfound'));
  say('decr n 20', word(await call('decr', 'eco:n', 20), 'notfound'));
  say('incr n 2^53', word(await call('incr', 'eco:n', 9007199254740992), 'notfound'));
  say('incr missing', word(await call('incr', 'eco:nmissing', 1), 'notfound'));
  await call('set', 'eco:text', 'abc', 0);
  say('incr non-numeric', word(await call('incr', 'eco:text', 1), 'notfound'));

  // add / replace / append / prepend
  say('add new', word(await call('add', 'eco:k', 'b', 0), 'notstored'));
  say('add existing', word(await call('add', 'eco:k', 'x', 0), 'notstored'));
  say('replace existing', word(await call('replace', 'eco:k', 'c', 0), 'notstored'));
  say('replace missing', word(await call('replace', 'eco:kmissing', 'x', 0), 'notstored'));
  say('append k', word(await call('append', 'eco:k', 'd'), 'notstored'));
  say('prepend k', word(await call('prepend', 'eco:k', 'a'), 'notstored'));
  await get('get k after append/prepend', 'eco:k');
  say('append missing', word(await call('append', 'eco:kmissing', 'x'), 'notstored'));
  say('prepend missing', word(await call('prepend', 'eco:kmissing', 'x'), 'notstored'));

  // cas: gets, a swap with the token, a swap with the now stale token
  await call('set', 'eco:c', 'x', 0);
  r = await call('gets', 'eco:c');
  if (r[0] || !r[1]) {
    say('gets c', r[0] ? word(r) : 'miss');
  } else {
    const cas = r[1].cas;
    say('gets c', show(r[1]['eco:c']) + ' cas=' + (/^[1-9]\d*$/.test(cas) ? 'set' : 'zero'));
    // the client answers false for EXISTS and NOT_FOUND alike
    say('cas c with its token', word(await call('cas', 'eco:c', 'y', cas, 0), 'false'));
    say('cas c with a stale token', word(await call('cas', 'eco:c', 'z', cas, 0), 'false'));
    await get('get c after cas', 'eco:c');
    await call('del', 'eco:c');
    say('cas c after delete', word(await call('cas', 'eco:c', 'w', cas, 0), 'false'));
  }

  // touch
  say('set t', word(await call('set', 'eco:t', 'x', 1000), 'notstored'));
  say('touch t', word(await call('touch', 'eco:t', 2000), 'notfound'));
  say('touch missing', word(await call('touch', 'eco:tmissing', 10), 'notfound'));
  await get('get t after touch', 'eco:t');

  // a large value (about 500 KB), a Buffer, multi-byte UTF-8
  const big = pattern(500000, 7);
  say('set big (500000 bytes)', word(await call('set', 'eco:big', big, 0), 'notstored'));
  r = await call('get', 'eco:big');
  say('get big', r[0] ? word(r) : show(r[1]) + ' same=' + (r[1] === big));
  const buf = Buffer.from(Array.from({ length: 95 }, (_, i) => 0x20 + i));
  say('set Buffer 0x20-0x7e', word(await call('set', 'eco:buf', buf, 0), 'notstored'));
  r = await call('get', 'eco:buf');
  say('get Buffer 0x20-0x7e', r[0] ? word(r) : show(r[1]) + ' same=' + (Buffer.isBuffer(r[1]) && r[1].equals(buf)));
  const text = 'ünïcødé ✓ ключ 鍵';
  say('set UTF-8 text', word(await call('set', 'eco:utf8', text, 0), 'notstored'));
  r = await call('get', 'eco:utf8');
  say('get UTF-8 text', r[0] ? word(r) : show(r[1]) + ' same=' + (r[1] === text));

  // keys with odd but legal bytes
  const odd = [
    "eco:punct!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    'eco:' + 'k'.repeat(246),
    '"quoted"',
    'END',
    'VALUE',
    'eco:été',
    'eco:ключ',
  ];
  for (let i = 0; i < odd.length; i++) say('set odd key ' + i, word(await call('set', odd[i], 'odd-' + i, 0), 'notstored'));
  for (let i = 0; i < odd.length; i++) await get('get odd key ' + i, odd[i]);
  r = await call('getMulti', odd);
  say('getmulti odd keys', r[0] ? word(r) : Object.keys(r[1]).length + ' hits, '
    + odd.filter((k, i) => r[1][k] === 'odd-' + i).length + ' right');
  // longer than 250: the client sends the key's MD5 instead
  say('set key 251 bytes', word(await call('set', 'k'.repeat(251), 'long', 0), 'notstored'));
  await get('get key 251 bytes', 'k'.repeat(251));
  say('set key with space', word(await call('set', 'eco:a b', 'x', 0), 'notstored'));

  // the connection is still good after all that
  await get('get k final', 'eco:k');
}

main().then(() => {
  mc.end();
  process.exit(0);
}, (e) => {
  process.stdout.write('fatal: ' + (e && e.stack || e) + '\n');
  process.exit(1);
});
