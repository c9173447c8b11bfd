// Debian's Chromium driven over a bare DevTools pipe, for the SDK benchmark: only the Target, Page, Runtime and
// Performance domains are enabled, as in a visitor's browser, which has no DevTools attached. playwright-core (the
// tests' driver) enables the Network domain on every page, and its inspector copies each request body on the main
// thread: measured here, that doubled what a fetch() of a 60 KB batch costs the page (2.0 → 4.0 ms), which is
// not the SDK's cost. Messages are JSON, each ended by a NUL byte, on file descriptors 3 (to the browser) and 4.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CHROMIUM_ARGS } from "./harness.mjs";

export async function launchBare() {
  const profile = mkdtempSync(join(tmpdir(), "fp-cdp-"));
  const child = spawn(process.env.CHROMIUM || "/usr/bin/chromium", [...CHROMIUM_ARGS, "--remote-debugging-pipe", `--user-data-dir=${profile}`, "about:blank"], {
    stdio: ["ignore", "ignore", "ignore", "pipe", "pipe"],
  });
  const [toBrowser, fromBrowser] = [child.stdio[3], child.stdio[4]];
  toBrowser.on("error", () => {}); // the browser closed its end (it exited)
  let lastId = 0;
  const pending = new Map();
  let buffered = "";
  fromBrowser.on("data", (chunk) => {
    buffered += chunk;
    let end;
    while ((end = buffered.indexOf("\0")) >= 0) {
      const message = JSON.parse(buffered.slice(0, end));
      buffered = buffered.slice(end + 1);
      const waiting = pending.get(message.id);
      if (!waiting) continue;
      pending.delete(message.id);
      if (message.error) waiting.reject(new Error(`${waiting.method}: ${message.error.message}`));
      else waiting.resolve(message.result);
    }
  });
  const exited = new Promise((r) => child.on("exit", r));
  /** Sends a DevTools command (to a page's session when `sessionId` is given); resolves to its result. */
  const send = (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = ++lastId;
      pending.set(id, { resolve, reject, method });
      toBrowser.write(JSON.stringify({ id, method, params, sessionId }) + "\0");
    });
  await send("Browser.getVersion");

  return {
    /** A page in a fresh browser context (its own storage) at `url`, once loaded. */
    async newPage(url) {
      const { browserContextId } = await send("Target.createBrowserContext");
      const { targetId } = await send("Target.createTarget", { url: "about:blank", browserContextId });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
      const on = (method, params) => send(method, params, sessionId);
      await on("Page.enable");
      await on("Performance.enable");
      await on("Page.navigate", { url });
      const page = {
        /** Any DevTools command on this page (the Profiler domain, for tests/browser/profile.mjs). */
        send: on,
        /** The value of `expression` (awaited when it is a promise); throws what the page threw. */
        async evaluate(expression) {
          const r = await on("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
          if (r.exceptionDetails) throw new Error(`page: ${r.exceptionDetails.exception?.description || r.exceptionDetails.text}`);
          return r.result.value;
        },
        /** Seconds the page's main thread spent running tasks so far (Chromium's own accounting). */
        async taskSeconds() {
          return (await on("Performance.getMetrics")).metrics.find((m) => m.name === "TaskDuration").value;
        },
        /** Resolves once `expression` is truthy in the page (polling), or throws after `ms`. */
        async waitFor(expression, ms = 15_000) {
          const deadline = Date.now() + ms;
          while (Date.now() < deadline) {
            try {
              if (await page.evaluate(expression)) return;
            } catch (e) {
              // The page may be between documents while it loads.
            }
            await new Promise((r) => setTimeout(r, 20));
          }
          throw new Error(`timed out waiting for ${expression}`);
        },
        async close() {
          await send("Target.disposeBrowserContext", { browserContextId });
        },
      };
      return page;
    },
    /** CPU seconds all renderer processes have used so far (the page's main thread, its workers, the rest). */
    async rendererCpuSeconds() {
      const { processInfo } = await send("SystemInfo.getProcessInfo");
      return processInfo.filter((p) => p.type === "renderer").reduce((t, p) => t + p.cpuTime, 0);
    },
    async close() {
      send("Browser.close").catch(() => {}); // it may exit before it answers
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null) child.kill("SIGKILL"), await exited;
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
