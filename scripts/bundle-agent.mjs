// Bundles the agent (src/main.ts and what it imports, dependencies included)
// into one ES module, dist/agent/clusterset-proxy.mjs, which bin/clusterset-proxy
// runs. Only what the agent uses is loaded: @kubernetes/client-node's
// generated API clients, for one, never are. netlink stays a package: it loads
// a native addon. The source map points stack traces back into src/.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/agent/clusterset-proxy.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['netlink'],
  sourcemap: true,
  // Without whitespace and comments the bundle is ASCII: V8 holds its source (kept for lazy
  // compilation) in one byte a character rather than two, 2 MB instead of 6. Names are kept,
  // so a stack trace names its functions even without the source map.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  // Stack traces need the mappings, not a copy of every source file.
  sourcesContent: false,
  // CommonJS dependencies call require() for node's built-in modules.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});
