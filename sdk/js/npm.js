// The npm package's ES module entry: the same functions as the script tag, plus init(options).
// Calls made before init() has finished are queued and replayed in order.
import { load } from "./load.js";
import { METHODS, parseOptions, start } from "./client.js";

let queue = [];
let api = null;
let started = null;

const later = (m) =>
  function () {
    if (api) return api[m].apply(null, arguments);
    if (queue) queue.push([m, arguments]);
  };

export const track = later("track");
export const page = later("page");
export const identify = later("identify");
export const alias = later("alias");
export const group = later("group");
export const reset = later("reset");
export const flush = later("flush");
export const consent = later("consent");

/**
 * Loads the module and starts tracking. Throws synchronously (an Error with `code`) for invalid options; the
 * returned promise resolves once the module runs. A second call returns the first call's promise.
 */
export function init(options) {
  if (started) return started;
  const known = Object.assign({}, options && typeof options === "object" ? options : {});
  delete known.wasmUrl;
  if (known.collector == null && typeof location !== "undefined") known.collector = location.origin;
  parseOptions(known); // throws here, synchronously, for invalid options
  // Bundlers (Vite, webpack 5) pick up the .wasm next to the package's index.js from this `new URL(…)` form.
  started = load(options.wasmUrl || new URL("footprint_sdk_bg.wasm", import.meta.url)).then((w) => {
    api = start(w, known);
    const q = queue;
    queue = null;
    q.forEach((call) => api[call[0]].apply(null, call[1]));
  });
  return started;
}

export { METHODS };
