// Interleaved A/B of two SDK builds on fresh pages: two collectors serving www directories A and B (copies of a
// `cargo xtask build-sdk` output), pages alternating A, B, B, A… in one browser, so that the machine's swings hit
// both alike. Per page, as tests/browser/bench.mjs measures them: µs per track() over the first 1,000 calls after
// ready and over the next 10,000, and the main thread's TaskDuration per event until flush() stored all 11,000.
// usage: node tests/browser/ab.mjs WWW_A WWW_B [pages per build]   (FOOTPRINT_BIN: the collector)
import { contextFor, launch, pageHtml, query, ready, startCollector, until } from "./harness.mjs";

const [A, B] = [process.argv[2], process.argv[3]];
const pages = +(process.argv[4] || 6);
const start = (dir) => ((process.env.FOOTPRINT_WWW_DIR = dir), startCollector());
const collectors = { A: await start(A), B: await start(B) };
const browser = await launch();
const res = { A: { k1: [], k10: [], event: [] }, B: { k1: [], k10: [], event: [] } };
const stored = { A: 0, B: 0 };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  const html = () => pageHtml({ data: { "flush-interval": "600000", "batch-size": "500" } });
  for (let i = 0; i < pages; i++) {
    for (const name of i % 2 ? ["B", "A"] : ["A", "B"]) {
      const c = collectors[name];
      const context = await contextFor(browser, c.url, html);
      const page = await context.newPage();
      await page.goto(`${c.url}/t/bench`);
      await ready(page);
      const cdp = await context.newCDPSession(page);
      await cdp.send("Performance.enable");
      const busy = async () => (await cdp.send("Performance.getMetrics")).metrics.find((m) => m.name === "TaskDuration").value;
      const loop = (n) =>
        page.evaluate((n) => {
          const props = { plan: "pro", seats: 3, tags: ["a", "b"] };
          const t = performance.now();
          for (let i = 0; i < n; i++) footprint.track("Bench", props);
          return ((performance.now() - t) * 1000) / n;
        }, n);
      const before = await busy();
      res[name].k1.push(await loop(1_000));
      res[name].k10.push(await loop(10_000));
      await page.evaluate(() => footprint.flush());
      stored[name] += 11_000;
      await until(() => query(c.db, "SELECT count(*) AS n FROM events WHERE name = 'Bench'")[0].n >= stored[name], 60_000, "the flushed events");
      res[name].event.push((((await busy()) - before) * 1e6) / 11_000);
      await context.close();
    }
  }
  const show = (xs) => `${median(xs).toFixed(2)} µs (${xs.map((x) => x.toFixed(1)).join(" ")})`;
  for (const n of ["A", "B"]) console.log(`${n}: per track() first 1,000 ${show(res[n].k1)}; next 10,000 ${show(res[n].k10)}; per event ${show(res[n].event)}`);
} finally {
  await browser.close();
  await collectors.A.stop();
  await collectors.B.stop();
}
