#!/usr/bin/env node
// Reads one JSON object on stdin and checks top-level fields:
//   node expect-json.mjs loggedIn=true authMethod=claude.ai
// A value that parses as JSON (true, 1, null, "x") is compared as JSON,
// anything else as a string. Prints what differs and exits 1 on a mismatch.
import { readFileSync } from "node:fs";

const text = readFileSync(0, "utf8");
let doc;
try {
  doc = JSON.parse(text);
} catch {
  console.error(`not JSON: ${JSON.stringify(text.slice(0, 200))}`);
  process.exit(1);
}
let ok = true;
for (const arg of process.argv.slice(2)) {
  const eq = arg.indexOf("=");
  const key = arg.slice(0, eq);
  let want = arg.slice(eq + 1);
  try {
    want = JSON.parse(want);
  } catch {}
  if (JSON.stringify(doc[key]) !== JSON.stringify(want)) {
    console.error(`${key}: expected ${JSON.stringify(want)}, got ${JSON.stringify(doc[key])}`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
