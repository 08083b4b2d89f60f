// Where mla-serve keeps what it derives from user files (converted models): the platform's usual
// cache folder, unless --cache-dir or MLA_SERVE_CACHE_DIR says otherwise.
import os from "node:os";
import path from "node:path";

/** The platform's cache folder for mla-serve: XDG on Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const home = env.HOME ?? os.homedir();
  if (platform === "darwin") return path.join(home, "Library", "Caches", "mla-serve");
  if (platform === "win32") return path.join(env.LOCALAPPDATA ?? path.join(home, "AppData", "Local"), "mla-serve", "Cache");
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".cache"), "mla-serve");
}
