// Provenance of models/recipes/gutenberg-tiny-mla/calibration-windows.u16.gz: the 128 calibration
// windows of 256 tokens that `mla-serve convert` drew (seed 42) from ../shared/corpus/train.txt when
// the bundled MLA model was first made. Run from the repository root after `npm run build:ts`:
//   node scripts/make_bundled_calibration.mjs ../shared/corpus/train.txt
// Stored as little-endian uint16 token ids (vocabulary 32,000), gzip-compressed.
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

import { sampleWindows } from "../dist/src/eval/windows.js";
import { Tokenizer } from "../dist/src/tokenizer/tokenizer.js";

const [file = "../shared/corpus/train.txt", out = "models/recipes/gutenberg-tiny-mla/calibration-windows.u16.gz"] = process.argv.slice(2);
const tok = Tokenizer.load("models/gutenberg-tiny");
const wins = sampleWindows(readFileSync(file, "utf8"), (t) => tok.encode(t), 128, 256, 42);
if (wins.length !== 128) throw new Error(`expected 128 windows, got ${wins.length}`);
const ids = Uint16Array.from(wins.flat());
writeFileSync(out, gzipSync(Buffer.from(ids.buffer), { level: 9 }));
console.log(`${out}: ${wins.length} windows x ${wins[0].length} tokens`);
