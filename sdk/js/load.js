// Loads the module: instantiates the .wasm with its two import modules, js/host.js (module "h": the Web APIs and
// the texts, see host.js) and wasm-bindgen's bundler-target glue (dist/glue/footprint_sdk_bg.js: only its start-up
// shim is left, the exports take and return numbers).
import { __wbg_set_wasm, __wbindgen_init_externref_table } from "../dist/glue/footprint_sdk_bg.js";
import { call, connect, imports } from "./host.js";

/** Fetches, compiles and starts the module at `url`; resolves to `{ call }` (js/host.js's, over its exports). */
export async function load(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error("footprint: " + response.status + " fetching " + url);
  const { instance } = await WebAssembly.instantiate(await response.arrayBuffer(), {
    h: imports,
    "./footprint_sdk_bg.js": { __wbindgen_init_externref_table },
  });
  const exports = instance.exports;
  __wbg_set_wasm(exports);
  exports.__wbindgen_start();
  connect(exports);
  return { call };
}
