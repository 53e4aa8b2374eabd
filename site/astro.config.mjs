// Astro 5 static site: reads only ../data at build time (see src/lib/data.ts).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'astro/config';

const siteDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(siteDir, '..');
// The data root the pages read; tests point it at a copy (LLMCB_DATA_DIR).
process.env.LLMCB_SITE_DATA = path.resolve(process.env.LLMCB_DATA_DIR ?? path.join(repoRoot, 'data'));

export default defineConfig({
  root: siteDir,
  srcDir: path.join(siteDir, 'src'),
  outDir: process.env.LLMCB_SITE_OUT ?? path.join(siteDir, 'dist'),
  base: process.env.SITE_BASE ?? '/',
  trailingSlash: 'ignore',
  build: { format: 'directory' },
  // No client JavaScript, no telemetry, no network: everything is rendered at build time.
  devToolbar: { enabled: false },
  vite: {
    server: { fs: { allow: [repoRoot] } },
    ssr: { external: ['vega', 'vega-lite'] },
  },
});
