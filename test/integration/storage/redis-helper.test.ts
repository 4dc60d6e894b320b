// The redis-server helper the replica steps of issue 17 build on: Debian's redis-server starts on
// this file's loopback address, answers, and `stop` ends exactly the PID it started.
// Address 127.0.0.39 (port 6379; s3-stores.test.ts uses other ports there).
import t from 'tap'
import { connect } from 'node:net'
import { requirePrivateNetns, createScope, pidGone } from '../../helpers/e2e/index.js'
import { startRedis, REDIS_PORT } from '../../helpers/redis.js'

/** Sends RESP inline commands, one per line, and resolves with the replies once `count` lines came. */
async function talk (host: string, lines: string[], count: number): Promise<string[]> {
  return await new Promise((resolve, reject) => {
    const socket = connect({ host, port: REDIS_PORT })
    let got = ''
    socket.once('error', reject)
    socket.once('connect', () => socket.write(lines.map(l => `${l}\r\n`).join('')))
    socket.on('data', (c: Buffer) => {
      got += c.toString('utf8')
      const replies = got.split('\r\n').filter(l => l !== '')
      if (replies.length >= count) { socket.destroy(); resolve(replies) }
    })
  })
}

if (requirePrivateNetns(t)) {
  const scope = createScope(t, 'redis')
  t.test('starts, answers, stops by PID', async t => {
    const redis = await startRedis('127.0.0.39', scope.dir)
    t.equal(redis.url, 'redis://127.0.0.39:6379')
    t.same(await talk('127.0.0.39', ['SET crossdock ok', 'GET crossdock'], 3), ['+OK', '$2', 'ok'])
    await redis.stop()
    t.ok(pidGone(redis.pid), 'the redis-server it started is gone')
  })
}
