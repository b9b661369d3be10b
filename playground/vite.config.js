// Builds the playground into dist/: index.html, one JS bundle, one CSS file.
// dist/ is checked in and embedded into the server binary (src/playground.rs),
// so `cargo build` needs no Node. Rebuild with `npm ci && npm run build`.
import { defineConfig } from 'vite';

export default defineConfig({
  // Relative asset paths (./assets/...): the page works wherever it is mounted.
  base: './',
  esbuild: { jsx: 'automatic', legalComments: 'none' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // No inlined JS/CSS assets beyond what the CSS already inlines (GraphiQL's
    // fonts are data: URLs inside its stylesheet); no modulepreload polyfill.
    modulePreload: false,
    cssCodeSplit: false,
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      onwarn(warning, warn) {
        // React libraries mark modules "use client"; meaningless in a bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      output: {
        // One JS file: graphql-ws is imported statically, the toolkit's
        // dynamic import of it must not split off a chunk.
        inlineDynamicImports: true,
        entryFileNames: 'assets/playground-[hash].js',
        assetFileNames: 'assets/playground-[hash][extname]',
      },
    },
  },
});
