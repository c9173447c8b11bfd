// footprint.js — the script-tag build: <script async src=".../footprint.js" data-write-key="…">.
// Takes over the stub's queue (window.footprint.q), loads the content-hashed .wasm next to this file, starts the
// SDK from the data-* attributes, then replays the queued calls in order.
import { loadStreaming } from "./load.js";
import { METHODS, OPTIONS, start } from "./client.js";

(function () {
  const script = document.currentScript;
  const fp = (window.footprint = window.footprint || {});
  const queue = fp.q || [];
  METHODS.forEach((m) => {
    fp[m] = function () {
      queue.push([m, arguments]);
    };
  });
  if (!script) return;
  const data = script.dataset;
  const options = { collector: new URL(script.src).origin };
  OPTIONS.forEach((name) => {
    if (data[name] != null) options[name] = data[name];
  });
  loadStreaming(new URL(__FOOTPRINT_WASM__, script.src))
    .then((w) => {
      const api = start(w, options);
      Object.assign(fp, api);
      delete fp.q;
      queue.forEach((call) => api[call[0]](...call[1]));
      document.dispatchEvent(new Event("footprint:ready"));
    })
    .catch((e) => console.error("footprint:", e));
})();
