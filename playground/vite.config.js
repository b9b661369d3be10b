// Builds both pages into dist/: the explorer (index.html, served at /) and the
// Credentials app (settings.html, served at /settings), their JS (React and
// graphql-ws in a shared chunk) and one stylesheet each.
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
    // One stylesheet per page: GraphiQL's styles stay on the explorer.
    cssCodeSplit: true,
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      onwarn(warning, warn) {
        // React libraries mark modules "use client"; meaningless in a bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
      input: { playground: 'index.html', settings: 'settings.html' },
      output: {
        // graphql-ws is imported statically by both pages, so the toolkit's
        // dynamic import of it lands in the shared chunk, not a chunk of its own.
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
});
