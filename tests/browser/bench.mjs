// `cargo xtask bench-sdk`: the SDK's numbers in headless Chromium against the real collector (release build).
// Prints bytes over the wire for the script-tag path, time to ready (inline script before the tag → the module
// replaced the stub), main-thread time per track() over 1,000 and 10,000 calls, and the main thread's whole cost per
// event — track(), encoding, sending and the answers — from Chromium's own task accounting (CDP Performance
// metrics, TaskDuration). Benchmarks print; they do not assert. `--quick` runs fewer rounds.
import { contextFor, launch, pageHtml, query, ready, startCollector, until } from "./harness.mjs";
import { sizes } from "./size.mjs";

const quick = process.argv.includes("--quick");
const rounds = quick ? 3 : 9;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const collector = await startCollector();
const browser = await launch();
try {
  const html = () =>
    pageHtml({
      head: '<script>window.__t0 = performance.now(); document.addEventListener("footprint:ready", () => (window.__ready = performance.now()))</script>',
      // A long interval and a large batch: the track() loops measure enqueueing only.
      data: { "flush-interval": "600000", "batch-size": "500" },
    });

  // Bytes over the wire: what the browser actually fetched (the collector serves uncompressed; a CDN or reverse
  // proxy compresses, so the compressed figures are computed from the same files).
  const rows = sizes();
  const total = rows.reduce((t, r) => ({ raw: t.raw + r.raw, gzip: t.gzip + r.gzip, brotli: t.brotli + r.brotli }), { raw: 0, gzip: 0, brotli: 0 });

  const readyMs = [];
  const per1k = [];
  const per10k = [];
  const sendMs = [];
  const perEvent = [];
  for (let round = 0; round < rounds; round++) {
    const context = await contextFor(browser, collector.url, html);
    const page = await context.newPage();
    await page.goto(`${collector.url}/t/bench`);
    await ready(page);
    readyMs.push(await page.evaluate(() => window.__ready - window.__t0));
    const cdp = await context.newCDPSession(page);
    await cdp.send("Performance.enable");
    const busy = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "TaskDuration").value;
    const busyBefore = await busy();
    const loop = (n) =>
      page.evaluate((n) => {
        const props = { plan: "pro", seats: 3, tags: ["a", "b"] };
        const t = performance.now();
        for (let i = 0; i < n; i++) footprint.track("Bench", props);
        return performance.now() - t;
      }, n);
    per1k.push(((await loop(1_000)) * 1_000) / 1_000);
    per10k.push(((await loop(10_000)) * 1_000) / 10_000);
    // Encoding and sending what waits (the batches already full started leaving after the loops) from flush()
    // until the last event is stored.
    const t = Date.now();
    await page.evaluate(() => footprint.flush());
    const expected = (round + 1) * 11_000;
    await until(() => query(collector.db, "SELECT count(*) AS n FROM events WHERE name = 'Bench'")[0].n >= expected, 60_000, "the flushed events");
    sendMs.push(Date.now() - t);
    // Everything the page's main thread did for these 11,000 events (an upper bound: it includes the benchmark's
    // own evaluate calls).
    perEvent.push(((await busy()) - busyBefore) * 1e6 / 11_000);
    await context.close();
  }
  const stored = query(collector.db, "SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events WHERE name = 'Bench'")[0];

  console.log(`\nFootprint browser SDK benchmark (Chromium headless, loopback collector, ${rounds} rounds, medians)`);
  console.log(`  bytes over the wire (stub + footprint.js + .wasm): ${total.raw} raw, ${total.gzip} gzip -9, ${total.brotli} brotli-11`);
  for (const r of rows) console.log(`    ${r.label.padEnd(34)} ${String(r.raw).padStart(7)} ${String(r.gzip).padStart(7)} ${String(r.brotli).padStart(7)}`);
  console.log(`  time to ready (script tag → module running): ${median(readyMs).toFixed(1)} ms  (all: ${readyMs.map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`  main thread per track(), 1,000 calls:  ${median(per1k).toFixed(2)} µs  (all: ${per1k.map((x) => x.toFixed(2)).join(", ")})`);
  console.log(`  main thread per track(), 10,000 calls: ${median(per10k).toFixed(2)} µs  (all: ${per10k.map((x) => x.toFixed(2)).join(", ")})`);
  console.log(`  main thread per event, track() + encoding + sending + answers (11,000 events): ${median(perEvent).toFixed(2)} µs  (all: ${perEvent.map((x) => x.toFixed(2)).join(", ")})`);
  console.log(`  flush() until all 11,000 events are stored: ${median(sendMs)} ms`);
  console.log(`  stored 'Bench' events: ${stored.n} (distinct messageIds ${stored.d}; expected ${rounds * 11_000})`);
} finally {
  await browser.close();
  await collector.stop();
}
