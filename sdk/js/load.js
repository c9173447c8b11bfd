// Loads the module: fetches and instantiates the .wasm with js/host.js as its imports (module "h": the Web APIs
// and the texts, see host.js). Nothing of wasm-bindgen's glue is needed: the exports take and return numbers, and
// the module is built without reference types, so it has no externref table to set up (but see below).
import { call, configure, connect, imports } from "./host.js";

/** Fetches, compiles and starts the module at `url`; resolves to js/host.js's `{ call, configure }` over its exports. */
export async function load(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error("footprint: " + response.status + " fetching " + url);
  const modules = { h: imports };
  // Only the build against the prebuilt std (reference types on; see xtask/src/sdk.rs) has wasm-bindgen's externref
  // table, which it would fill at start: the module never uses it (its exports and imports are numbers).
  if (__FOOTPRINT_EXTERNREF__) modules["./footprint_sdk_bg.js"] = { __wbindgen_init_externref_table() {} };
  const { instance } = await WebAssembly.instantiate(await response.arrayBuffer(), modules);
  connect(instance.exports);
  return { call, configure };
}
