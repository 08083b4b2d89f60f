// The one place that loads the compiled addon.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

import { packageRoot } from "../paths.js";
import type { NativeModule } from "./types.js";

let loaded: NativeModule | undefined;

/** The native module, loaded on first use from build/Release/mla_native.node. */
export function native(): NativeModule {
  if (loaded) return loaded;
  const file = path.join(packageRoot(), "build", "Release", "mla_native.node");
  if (!existsSync(file)) {
    throw new Error(`native addon not built: ${file} is missing (run \`npm install\` or \`npm run build\`)`);
  }
  loaded = createRequire(import.meta.url)(file) as NativeModule;
  return loaded;
}
