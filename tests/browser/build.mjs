// build.mjs APP_DIR OUT_DIR WS_URL: build the guide app in APP_DIR with Vite into OUT_DIR.
//
// The guide's hooks read process.env.REACT_APP_WS_URL (a Create React App variable);
// Vite's `define` replaces that expression with WS_URL at build time, which is what CRA
// does. JSX goes through Vite's own transform (Oxc, automatic runtime), so no React plugin
// is needed. No config file: everything is here, and nothing is written outside OUT_DIR
// and the cache dir under it.
import path from 'node:path';
import { build } from 'vite';

const [appDir, outDir, wsUrl] = process.argv.slice(2);
if (!appDir || !outDir || !wsUrl) {
  console.error('usage: node build.mjs APP_DIR OUT_DIR WS_URL');
  process.exit(2);
}

await build({
  root: appDir,
  configFile: false,
  logLevel: 'warn',
  cacheDir: path.join(outDir, '..', 'vite-cache'),
  define: { 'process.env.REACT_APP_WS_URL': JSON.stringify(wsUrl) },
  oxc: { jsx: { runtime: 'automatic' } },
  build: { outDir, emptyOutDir: true, sourcemap: false },
});
