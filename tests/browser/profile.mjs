// The main thread's time in the benchmark's phases by function, from Chromium's CPU profiler (CDP Profiler, self
// time): the first 1,000 track() calls after ready ("loop1k"), the next 10,000 ("loop10k": samples under the loop
// only), flush() until the collector stored every event ("flush": every sample but idle), or both loops and the
// flush ("all": every sample but idle). Shares, unlike timings, hold on a busy machine. The pages run as in
// bench.mjs (bare DevTools pipe, served by the collector). For wasm names, give it a build with its name section.
// usage: node tests/browser/profile.mjs loop1k|loop10k|flush|all [sampling interval µs] [rounds] [www dir]   (FOOTPRINT_BIN: the collector)
import { rmSync } from "node:fs";
import { benchSite } from "./bench.mjs";
import { launchBare } from "./cdp.mjs";
import { query, startCollector, until } from "./harness.mjs";
const phase = process.argv[2] || "loop1k";
const interval = +(process.argv[3] || 20);
const rounds = +(process.argv[4] || 3);
const site = benchSite(process.argv[5] || new URL("../../www", import.meta.url).pathname);
process.env.FOOTPRINT_WWW_DIR = site;
const collector = await startCollector();
const browser = await launchBare();
const agg = new Map();
let total = 0;
try {
  for (let round = 0; round < rounds; round++) {
    const page = await browser.newPage(`${collector.url}/bench.html`);
    await page.waitFor("window.footprint && !window.footprint.q");
    await page.evaluate(`window.benchLoop = function benchLoop(n) { const props = { plan: "pro", seats: 3, tags: ["a", "b"] }; for (let i = 0; i < n; i++) footprint.track("Bench", props); }`);
    const cdp = page;
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval });
    const loop = (n) => page.evaluate(`benchLoop(${n})`);
    if (phase === "loop1k") {
      await cdp.send("Profiler.start");
      await loop(1000);
    } else if (phase === "loop10k") {
      await loop(1000);
      await cdp.send("Profiler.start");
      await loop(10000);
    } else {
      if (phase === "all") await cdp.send("Profiler.start");
      await loop(1000); await loop(10000);
      if (phase !== "all") await cdp.send("Profiler.start");
      await page.evaluate("footprint.flush()");
      const expected = (round + 1) * 11_000;
      await until(() => query(collector.db, "SELECT count(*) AS n FROM events WHERE name = 'Bench'")[0].n >= expected, 60_000, "flushed");
    }
    const { profile } = await cdp.send("Profiler.stop");
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map();
    for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n.id);
    const under = new Map();
    const inLoop = (id) => {
      if (under.has(id)) return under.get(id);
      const n = byId.get(id);
      const r = n.callFrame.functionName === "benchLoop" || (parent.has(id) && inLoop(parent.get(id)));
      under.set(id, r);
      return r;
    };
    for (let i = 0; i < profile.samples.length; i++) {
      const id = profile.samples[i], n = byId.get(id), f = n.callFrame;
      const dt = profile.timeDeltas[i + 1] ?? 0; // the time until the next sample
      if (phase.startsWith("loop") ? !inLoop(id) : /^\((idle|root)\)/.test(f.functionName)) continue;
      const key = `${f.functionName || "(anon)"} ${f.url.split("/").pop()}:${f.lineNumber}:${f.columnNumber}`;
      agg.set(key, (agg.get(key) || 0) + dt);
      total += dt;
    }
    await page.close();
  }
  const rows = [...agg].sort((a, b) => b[1] - a[1]);
  console.log(`phase ${phase}: ${(total / 1000 / rounds).toFixed(2)} ms per round (sampled), ${rounds} rounds`);
  for (const [k, t] of rows.slice(0, +(process.env.TOP || 45))) console.log(`${(t / 1000 / rounds).toFixed(3).padStart(8)} ms ${(100 * t / total).toFixed(1).padStart(5)}%  ${k}`);
} finally {
  await browser.close();
  await collector.stop();
  rmSync(site, { recursive: true, force: true });
}
