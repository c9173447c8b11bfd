// Shared harness of the SDK's browser tests: the REAL collector binary (port 0, a temporary data dir), Debian's
// Chromium through playwright-core, test pages served on the collector's origin, and read-only queries of what the
// collector stored (SQLite, through python3's sqlite3 module). Nothing is mocked: the pages load /footprint.js and
// the hashed .wasm from the collector, and events travel to its /v1/batch.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../../", import.meta.url));

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
  "--disable-sync",
  // Chromium 156 opens two omnibox-popup WebUI renderers with every new window (each test's and benchmark page's
  // browser context) and parses their megabytes of script on background threads: on a 2-core machine that took the
  // page's main thread off its core for milliseconds at a time, in the middle of what the benchmarks measure.
  "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup",
];

/** Starts `footprint serve` on 127.0.0.1:0 with a fresh data dir; resolves once it printed its address. */
export async function startCollector() {
  const bin = process.env.FOOTPRINT_BIN || join(root, "target/debug/footprint");
  const dataDir = mkdtempSync(join(tmpdir(), "fp-sdk-test-"));
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/[\d.:]+)/);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`collector exited (${code}): ${stderr}`)));
  });
  return {
    url,
    db: join(dataDir, "footprint.db"),
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.on("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Rows of a read-only query against the collector's SQLite file, as objects. */
export function query(db, sql) {
  const script = `
import json, sqlite3, sys
con = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
con.row_factory = sqlite3.Row
print(json.dumps([dict(r) for r in con.execute(sys.argv[2])]))`;
  const r = spawnSync("python3", ["-c", script, db, sql], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`query failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Stored events (parsed `context` and `properties`), oldest first. The collector keeps `context.page`,
 * `context.campaign` and `context.sessionId` in columns (url, path, referrer, utm_*, session_id). */
export function events(db, where = "1=1") {
  return query(db, `SELECT message_id, type, name, anonymous_id, user_id, properties, context, flags, url, path, referrer, utm_source, session_id FROM events WHERE ${where} ORDER BY id`).map((e) => ({
    ...e,
    context: e.context ? JSON.parse(e.context) : null,
    properties: e.properties ? JSON.parse(e.properties) : null,
  }));
}

/** Polls `probe` until it returns a truthy value or `ms` pass; returns the last value (the caller asserts). */
export async function until(probe, ms = 10_000, what = "condition") {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: CHROMIUM_ARGS });
}

/** The stub snippet, as README documents it. */
export const STUB = `(t=>"track page identify alias group reset flush consent".split(" ").map(n=>t[n]=t[n]||function(){t.q.push([n,arguments])}))(window.footprint=window.footprint||{q:[]});`;

/** A test page: the stub, the script tag (`src`) with `data` attributes, then `body` HTML. */
export function pageHtml({ data = {}, body = "", head = "", src = "/footprint.js" } = {}) {
  const attrs = Object.entries({ "write-key": "wk_demo", ...data })
    .map(([k, v]) => ` data-${k}="${v}"`)
    .join("");
  return `<!doctype html><html><head><meta charset="utf-8"><title>SDK test</title>${head}
<script>${STUB}</script>
<script async src="${src}"${attrs}></script></head><body>${body}</body></html>`;
}

/**
 * A browser context whose pages under `${collector}/t/…` are answered with `html` (a function of the path), while
 * everything else — /footprint.js, the .wasm, /v1/batch — goes to the real collector.
 */
export async function contextFor(browser, collector, html, options = {}) {
  const context = await browser.newContext(options);
  await context.route(`${collector}/t/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: html(path) });
  });
  return context;
}

/** Waits until the SDK replaced the stub (the module is running). */
export async function ready(page) {
  await page.waitForFunction(() => window.footprint && !window.footprint.q, null, { timeout: 15_000 });
}
