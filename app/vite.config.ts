// Builds app/dist: two pages (index.html: the timeline and the SMART redirect URI;
// launch.html: the EHR launch), served by PixelHub at /app/ (hub/http/app_routes.py).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/app/",
  // fhirclient's "pure" browser build: no fetch/AbortController polyfills (cross-fetch), no
  // isomorphic-webcrypto fallback; every browser the app supports has them. package.json
  // overrides that package with the local stub in stubs/, so `npm ci` does not fetch its
  // optional expo/react-native tree (30 packages instead of 537).
  define: { FHIRCLIENT_PURE: "true" },
  resolve: {
    alias: { "isomorphic-webcrypto": fileURLToPath(new URL("./src/webcrypto.ts", import.meta.url)) },
  },
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    sourcemap: false,
    modulePreload: { polyfill: false }, // no inline script: the CSP allows only 'self'
    rollupOptions: {
      input: { index: "index.html", launch: "launch.html" },
      output: {
        // the SMART client and its helpers in one chunk, Preact in another: named for what
        // they are, cached apart from the app's own code
        manualChunks(id: string) {
          if (/node_modules\/(fhirclient|debug|ms|js-base64)\/|\/src\/webcrypto\.ts$/.test(id)) return "fhirclient";
          if (id.includes("node_modules/preact/")) return "preact";
          if (/\/src\/(config|smart)\.ts$/.test(id)) return "smart"; // both pages
          return undefined;
        },
      },
    },
  },
});
