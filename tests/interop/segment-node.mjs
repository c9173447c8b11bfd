// Drives the official Segment Node library (@segment/analytics-node) against a Footprint collector.
// Usage: node segment-node.mjs http://127.0.0.1:PORT WRITE_KEY
// Prints one JSON line with what the library reported; exits non-zero if the library reported an error.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 15, flushInterval: 50 })
const errors = []
let requests = 0
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))
analytics.on('http_request', () => { requests += 1 })

analytics.identify({ userId: 'interop-user', traits: { plan: 'pro', logins: 3 } })
for (let i = 0; i < 40; i++) {
  analytics.track({ userId: 'interop-user', event: 'Interop Tested', properties: { n: i } })
}
analytics.page({ anonymousId: 'interop-anon', name: 'Docs', properties: { url: 'https://shop.example/docs?utm_source=interop', path: '/docs' } })
analytics.screen({ userId: 'interop-user', name: 'Settings' })
analytics.group({ userId: 'interop-user', groupId: 'acme', traits: { seats: 10 } })
analytics.alias({ userId: 'interop-user', previousId: 'interop-anon' })
analytics.track({ anonymousId: 'interop-anon', event: 'Historical Import', timestamp: new Date('2025-06-01T10:00:00Z') })

await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ requests, errors }))
process.exit(errors.length ? 1 : 0)
