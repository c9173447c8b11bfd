// `cargo xtask bench-sdk`: the SDK's numbers in headless Chromium against the real collector (release build).
// Prints bytes over the wire for the script-tag path, time to ready (inline script before the tag → the module
// replaced the stub), main-thread time per track() over 1,000 and 10,000 calls, and the main thread's whole cost per
// event — track(), encoding, sending and the answers — from Chromium's own task accounting (Performance metrics,
// TaskDuration). The pages run in Chromium driven over a bare DevTools pipe (cdp.mjs), as in a visitor's browser:
// no Network domain, whose inspector (which playwright-core always enables) doubles what each request costs the page.
// The collector serves the page itself, from a copy of the SDK build. Benchmarks print; they do not assert.
// `--quick` runs fewer rounds.
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchBare } from "./cdp.mjs";
import { pageHtml, query, startCollector, until } from "./harness.mjs";
import { sizes } from "./size.mjs";

const quick = process.argv.includes("--quick");
const rounds = quick ? 3 : 9;
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A www directory with the SDK build of `from` and the benchmark page, `bench.html`. */
export function benchSite(from) {
  const dir = mkdtempSync(join(tmpdir(), "fp-bench-www-"));
  for (const name of readdirSync(from).filter((n) => /^footprint\..*js$|^footprint\..*wasm$/.test(n))) copyFileSync(join(from, name), join(dir, name));
  const html = pageHtml({
    head: '<script>window.__t0 = performance.now(); document.addEventListener("footprint:ready", () => (window.__ready = performance.now()))</script>',
    // A long interval and a large batch: the track() loops measure enqueueing only.
    data: { "flush-interval": "600000", "batch-size": "500" },
  });
  writeFileSync(join(dir, "bench.html"), html);
  return dir;
}

/** One page's numbers: time to ready, µs per track() over 1,000 then 10,000 calls, and the main thread's µs per
 * event from before the loops until the collector stored all 11,000 (after `storedBefore` earlier ones). */
export async function measurePage(browser, collector, storedBefore) {
  const page = await browser.newPage(`${collector.url}/bench.html`);
  try {
    await page.waitFor("window.footprint && !window.footprint.q");
    const readyMs = await page.evaluate("window.__ready - window.__t0");
    const busyBefore = await page.taskSeconds();
    const cpuBefore = await browser.rendererCpuSeconds();
    const loop = (n) =>
      page.evaluate(`(() => {
        const props = { plan: "pro", seats: 3, tags: ["a", "b"] };
        const t = performance.now();
        for (let i = 0; i < ${n}; i++) footprint.track("Bench", props);
        return ((performance.now() - t) * 1000) / ${n};
      })()`);
    const k1 = await loop(1_000);
    const k10 = await loop(10_000);
    // Encoding and sending what waits (the batches already full started leaving after the loops) from flush()
    // until the last event is stored.
    const t = Date.now();
    await page.evaluate("footprint.flush()");
    const expected = storedBefore + 11_000;
    await until(() => query(collector.db, "SELECT count(*) AS n FROM events WHERE name = 'Bench'")[0].n >= expected, 60_000, "the flushed events");
    const sendMs = Date.now() - t;
    // Everything the page's main thread did for these 11,000 events (an upper bound: it includes the benchmark's
    // own evaluate calls).
    const event = ((await page.taskSeconds()) - busyBefore) * 1e6 / 11_000;
    // And every renderer thread's CPU time, the send worker's included (an upper bound too: other renderers').
    const cpu = ((await browser.rendererCpuSeconds()) - cpuBefore) * 1e6 / 11_000;
    return { readyMs, k1, k10, sendMs, event, cpu };
  } finally {
    await page.close();
  }
}

/** A typical page instead of a burst: 5 track() calls and flush() shortly after ready, until the collector stored them
 * with the page view (after `storedBefore` earlier events). Answers the page's main-thread ms (`mainMs`) and every
 * renderer thread's CPU ms (`cpuMs`). */
export async function measureSmallPage(browser, collector, storedBefore) {
  const page = await browser.newPage(`${collector.url}/bench.html`);
  try {
    await page.waitFor("window.footprint && !window.footprint.q");
    await new Promise((r) => setTimeout(r, 200));
    const [busyBefore, cpuBefore] = [await page.taskSeconds(), await browser.rendererCpuSeconds()];
    await page.evaluate(`for (let i = 0; i < 5; i++) footprint.track("Small", { i }); footprint.flush()`);
    await until(() => query(collector.db, "SELECT count(*) AS n FROM events")[0].n >= storedBefore + 6, 10_000, "the page's events");
    await new Promise((r) => setTimeout(r, 300)); // the answer's handling
    return { mainMs: ((await page.taskSeconds()) - busyBefore) * 1e3, cpuMs: ((await browser.rendererCpuSeconds()) - cpuBefore) * 1e3 };
  } finally {
    await page.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const site = benchSite(new URL("../../www", import.meta.url).pathname);
  process.env.FOOTPRINT_WWW_DIR = site;
  const collector = await startCollector();
  const browser = await launchBare();
  try {
    // Bytes over the wire: what the browser actually fetched (the collector serves uncompressed; a CDN or reverse
    // proxy compresses, so the compressed figures are computed from the same files).
    const rows = sizes();
    const total = rows.reduce((t, r) => ({ raw: t.raw + r.raw, gzip: t.gzip + r.gzip, brotli: t.brotli + r.brotli }), { raw: 0, gzip: 0, brotli: 0 });
    const runs = [];
    for (let round = 0; round < rounds; round++) runs.push(await measurePage(browser, collector, round * 11_000));
    const stored = query(collector.db, "SELECT count(*) AS n, count(DISTINCT message_id) AS d FROM events WHERE name = 'Bench'")[0];
    const show = (key, digits) => `${median(runs.map((r) => r[key])).toFixed(digits)}`;
    const all = (key, digits) => runs.map((r) => r[key].toFixed(digits)).join(", ");

    console.log(`\nFootprint browser SDK benchmark (Chromium headless over a bare DevTools pipe, loopback collector, ${rounds} rounds, medians)`);
    console.log(`  bytes over the wire (stub + footprint.js + .wasm): ${total.raw} raw, ${total.gzip} gzip -9, ${total.brotli} brotli-11`);
    for (const r of rows) console.log(`    ${r.label.padEnd(34)} ${String(r.raw).padStart(7)} ${String(r.gzip).padStart(7)} ${String(r.brotli).padStart(7)}`);
    console.log(`  time to ready (script tag → module running): ${show("readyMs", 1)} ms  (all: ${all("readyMs", 0)})`);
    console.log(`  main thread per track(), 1,000 calls:  ${show("k1", 2)} µs  (all: ${all("k1", 2)})`);
    console.log(`  main thread per track(), 10,000 calls: ${show("k10", 2)} µs  (all: ${all("k10", 2)})`);
    console.log(`  main thread per event, track() + encoding + sending + answers (11,000 events): ${show("event", 2)} µs  (all: ${all("event", 2)})`);
    console.log(`  renderer CPU per event, every thread (the send worker's included): ${show("cpu", 2)} µs  (all: ${all("cpu", 2)})`);
    console.log(`  flush() until all 11,000 events are stored: ${show("sendMs", 0)} ms`);
    console.log(`  stored 'Bench' events: ${stored.n} (distinct messageIds ${stored.d}; expected ${rounds * 11_000})`);
  } finally {
    await browser.close();
    await collector.stop();
    rmSync(site, { recursive: true, force: true });
  }
}
