import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The package's root folder (where package.json says name "mla-serve"). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (true) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, "utf8")).name === "mla-serve") return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("cannot find the mla-serve package root");
    dir = parent;
  }
}

/** The package's version, from its package.json. */
export function packageVersion(): string {
  return JSON.parse(readFileSync(path.join(packageRoot(), "package.json"), "utf8")).version as string;
}

/** The model served and generated from when no --model is given. */
export function defaultModelDir(): string {
  const root = packageRoot();
  for (const name of ["gutenberg-tiny-mla", "gutenberg-tiny"]) {
    const dir = path.join(root, "models", name);
    if (existsSync(path.join(dir, "config.json"))) return dir;
  }
  throw new Error(`no bundled model under ${path.join(root, "models")}`);
}
