// Loads the module: fetches and instantiates the .wasm with js/host.js as its imports (module "h": the Web APIs
// and the texts, see host.js). Nothing of wasm-bindgen's glue is needed: the exports take and return numbers, and
// the module is built without reference types, so it has no externref table to set up (but see below).
import { call, configure, connect, imports } from "./host.js";

/** The module's imports. */
function modules() {
  const m = { h: imports };
  // Only the build against the prebuilt std (reference types on; see xtask/src/sdk.rs) has wasm-bindgen's externref
  // table, which it would fill at start: the module never uses it (its exports and imports are numbers).
  if (__FOOTPRINT_EXTERNREF__) m["./footprint_sdk_bg.js"] = { __wbindgen_init_externref_table() {} };
  return m;
}

/** Starts the instantiated module; resolves to js/host.js's `{ call, configure }` over its exports. */
const started = ({ instance }) => (connect(instance.exports), { call, configure });

/** Fetches, compiles and starts the module at `url` (any server: the bytes are read whatever the response's
 * Content-Type; the npm entry, whose users host the file themselves). */
export async function load(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error("footprint: " + response.status + " fetching " + url);
  return started(await WebAssembly.instantiate(await response.arrayBuffer(), modules()));
}

/** The same, compiling while the bytes arrive: for the script tag, whose .wasm the collector serves as
 * `application/wasm` (which streaming compilation requires). An error answer rejects it too (a TypeError). */
export const loadStreaming = (url) => WebAssembly.instantiateStreaming(fetch(url), modules()).then(started);
