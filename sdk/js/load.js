// Loads the module: wasm-bindgen's bundler-target glue (dist/glue/footprint_sdk_bg.js) has the string marshalling
// and the import shims; this instantiates the .wasm with them and with js/host.js (a loader of a few lines instead of
// the web target's general one).
import * as glue from "../dist/glue/footprint_sdk_bg.js";
import * as host from "./host.js";

/** Fetches, compiles and starts the module at `url`; resolves to its exports (`call`, `init`). */
export async function load(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error("footprint: " + response.status + " fetching " + url);
  const module = await WebAssembly.compile(await response.arrayBuffer());
  // Two import modules: the glue's shims, and js/host.js (imported by its path under the glue's snippets/).
  const imports = {};
  for (const i of WebAssembly.Module.imports(module)) imports[i.module] = i.module.endsWith("/js/host.js") ? host : glue;
  const instance = await WebAssembly.instantiate(module, imports);
  glue.__wbg_set_wasm(instance.exports);
  instance.exports.__wbindgen_start();
  return { call: glue.call, init: glue.init };
}
