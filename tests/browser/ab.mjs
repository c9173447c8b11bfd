// Interleaved A/B of two SDK builds on fresh pages: two collectors serving www directories A and B (copies of a
// `cargo xtask build-sdk` output), pages alternating A, B, B, A… in one browser, so that the machine's swings hit
// both alike. Per page, as tests/browser/bench.mjs measures them (bare DevTools pipe): µs per track() over the first
// 1,000 calls after ready and over the next 10,000, the main thread's TaskDuration per event until the collector
// stored all 11,000, and the renderer processes' CPU time per event (every thread).
// With --small, a typical page instead (bench.mjs's measureSmallPage: 5 events after ready): the page's main-thread
// ms and the renderers' CPU ms, per page.
// usage: node tests/browser/ab.mjs WWW_A WWW_B [pages per build] [--small]   (FOOTPRINT_BIN: the collector)
import { rmSync } from "node:fs";
import { benchSite, measurePage, measureSmallPage, median } from "./bench.mjs";
import { launchBare } from "./cdp.mjs";
import { startCollector } from "./harness.mjs";

const [A, B] = [process.argv[2], process.argv[3]];
const small = process.argv.includes("--small");
const pages = +(process.argv.slice(4).find((a) => !a.startsWith("--")) || 6);
const sites = { A: benchSite(A), B: benchSite(B) };
const start = (dir) => ((process.env.FOOTPRINT_WWW_DIR = dir), startCollector());
const collectors = { A: await start(sites.A), B: await start(sites.B) };
const browser = await launchBare();
const res = { A: [], B: [] };
try {
  for (let i = 0; i < pages; i++)
    for (const name of i % 2 ? ["B", "A"] : ["A", "B"]) res[name].push(await (small ? measureSmallPage(browser, collectors[name], res[name].length * 6) : measurePage(browser, collectors[name], res[name].length * 11_000)));
  const show = (runs, key, unit = "µs") => `${median(runs.map((r) => r[key])).toFixed(2)} ${unit} (${runs.map((r) => r[key].toFixed(1)).join(" ")})`;
  for (const n of ["A", "B"])
    if (small) console.log(`${n}: main thread per page ${show(res[n], "mainMs", "ms")}; renderer CPU per page ${show(res[n], "cpuMs", "ms")}`);
    else console.log(`${n}: ready ${show(res[n], "readyMs", "ms")}; per track() first 1,000 ${show(res[n], "k1")}; next 10,000 ${show(res[n], "k10")}; per event ${show(res[n], "event")}; renderer CPU per event ${show(res[n], "cpu")}`);
} finally {
  await browser.close();
  await collectors.A.stop();
  await collectors.B.stop();
  for (const dir of Object.values(sites)) rmSync(dir, { recursive: true, force: true });
}
