// memjs (binary protocol) against argv[2] ("host:port"), optionally with SASL
// (argv[3] user, argv[4] password): one line per step on stdout.
const memjs = require('memjs');
const opts = {retries: 0, timeout: 2, conntimeout: 2, logger: {log: () => {}}};
if (process.argv[3]) { opts.username = process.argv[3]; opts.password = process.argv[4]; }
const c = memjs.Client.create(process.argv[2], opts);
const say = (what, v) => console.log(what + ': ' + v);
const show = (v) => (v === null || v === undefined ? 'null' : JSON.stringify(v.toString()));
async function step(what, f) {
  try { say(what, await f()); } catch (e) { say(what, 'error ' + (e && e.message ? e.message.split('\n')[0] : e)); }
}
(async () => {
  await step('set k', async () => (await c.set('k', 'hello', {expires: 0})));
  await step('get k', async () => show((await c.get('k')).value));
  await step('get k flags', async () => { const r = await c.get('k'); return r.flags ? r.flags.toString('hex') : 'none'; });
  await step('add k', async () => (await c.add('k', 'x')));
  await step('add k2', async () => (await c.add('k2', 'x')));
  await step('replace k2', async () => (await c.replace('k2', 'y')));
  await step('replace nope', async () => (await c.replace('nope', 'y')));
  await step('append k', async () => (await c.append('k', ' world')));
  await step('prepend k', async () => (await c.prepend('k', '>> ')));
  await step('get k', async () => show((await c.get('k')).value));
  await step('increment n (create)', async () => JSON.stringify(await c.increment('n', 5, {initial: 10})));
  await step('increment n', async () => JSON.stringify(await c.increment('n', 5, {})));
  await step('decrement n', async () => JSON.stringify(await c.decrement('n', 100, {})));
  await step('delete k2', async () => (await c.delete('k2')));
  await step('delete k2 again', async () => (await c.delete('k2')));
  await step('get k2', async () => show((await c.get('k2')).value));
  await step('touch k', async () => (await c.touch('k', 100)));
  await step('touch nope', async () => (await c.touch('nope', 100)));
  await step('big value', async () => { await c.set('big', 'z'.repeat(500000)); return (await c.get('big')).value.length; });
  await step('flush', async () => JSON.stringify(Object.values(await c.flush())));
  await step('get k after flush', async () => show((await c.get('k')).value));
  c.close();
})();
