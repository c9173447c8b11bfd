// Builds the dashboard into www/: dashboard/src → www/dashboard/app.<hash>.{js,css} (immutable names), and
// www/index.html from dashboard/index.html. Prints the first-load size (HTML + JS + CSS) with brotli and fails
// above the budget. Run by `cargo xtask run` and `cargo xtask test` (xtask/src/dashboard.rs).
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants } from 'node:zlib';

const BUDGET_BROTLI = 100 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const out = join(root, 'www', 'dashboard');

const result = await esbuild.build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  outdir: 'out',
  write: false,
  legalComments: 'none',
  logLevel: 'warning',
});
const hash = (bytes) => createHash('sha256').update(bytes).digest('hex').slice(0, 10);
const files = {};
for (const f of result.outputFiles) {
  const ext = f.path.endsWith('.css') ? 'css' : 'js';
  files[ext] = { name: `app.${hash(f.contents)}.${ext}`, bytes: f.contents };
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
for (const f of Object.values(files)) writeFileSync(join(out, f.name), f.bytes);
const html = readFileSync(join(here, 'index.html'), 'utf8').replace('{{css}}', files.css.name).replace('{{js}}', files.js.name);
writeFileSync(join(root, 'www', 'index.html'), html);

const br = (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
const rows = [['index.html', Buffer.from(html)], [files.js.name, files.js.bytes], [files.css.name, files.css.bytes]];
let total = 0;
for (const [name, bytes] of rows) {
  const b = br(bytes);
  total += b;
  console.log(`dashboard: ${name.padEnd(28)} ${String(bytes.length).padStart(8)} B  ${String(b).padStart(7)} B brotli`);
}
console.log(`dashboard: first load ${(total / 1024).toFixed(1)} KB brotli (budget ${BUDGET_BROTLI / 1024} KB)`);
if (total > BUDGET_BROTLI) {
  console.error('dashboard: over the size budget');
  process.exit(1);
}
