#!/usr/bin/env python3
"""Per-file edge coverage from libFuzzer's -print_coverage=1 output of a
-s none build run with symshim.so preloaded (which "symbolizes" every PC as
its offset in the binary, +1 as libFuzzer passes the next instruction).

usage: edges_per_file.py <binary> <coverage-log> <out-prefix> <regex of source files>...

libFuzzer prints one line per function of the binary's sanitizer-coverage
PC table (functions split at the entries flagged as function entry):
"[UN]COVERED_FUNC: hits: H edges: C/T <pc> ...": T = coverage points
(inline 8-bit counters) of the function, C = those reached by any input of
the corpus run. A function never entered is UNCOVERED_FUNC with C = 0.
Each function is attributed to the source file of the function its entry
PC lies in (llvm-symbolizer, outermost, i.e. non-inlined, frame).
"""
import re, subprocess, sys, collections, json

binary, log, out = sys.argv[1:4]
pats = [re.compile(p) for p in sys.argv[4:]]
funcs = []
for m in re.finditer(r'^(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (0x[0-9a-f]+)', open(log, errors='replace').read(), re.M):
    funcs.append((int(m.group(5), 16) - 1, int(m.group(3)), int(m.group(4))))
assert funcs, 'no COVERED_FUNC lines'
addrs = ''.join(hex(pc) + '\n' for pc, _, _ in funcs)
sym = subprocess.run(['llvm-symbolizer', '--obj=' + binary, '--inlining', '--demangle'],
                     input=addrs, capture_output=True, text=True).stdout
blocks = sym.strip('\n').split('\n\n')
assert len(blocks) == len(funcs), (len(blocks), len(funcs))
rows = []
for (pc, c, t), b in zip(funcs, blocks):
    lines = b.split('\n')
    name, loc = lines[-2], lines[-1]
    file, line_no = loc.rsplit(':', 2)[:2]
    if any(p.search(file) for p in pats):
        rows.append((file, int(line_no), name, c, t))
rows.sort()
per_file = collections.OrderedDict()
for file, ln, name, c, t in rows:
    f = per_file.setdefault(file, [0, 0, 0, 0])
    f[0] += c; f[1] += t; f[2] += 1 if c else 0; f[3] += 1
with open(out + '.funcs.tsv', 'w') as fh:
    fh.write('file\tline\tfunction\treached_edges\tedges\n')
    for r in rows:
        fh.write('\t'.join(map(str, r)) + '\n')
tot = [sum(v[i] for v in per_file.values()) for i in range(4)]
allc = sum(c for _, c, _ in funcs); allt = sum(t for _, _, t in funcs)
json.dump({'binary': [allc, allt], 'files': per_file, 'total': tot}, open(out + '.json', 'w'), indent=1)
print(f'whole binary: {allc}/{allt} edges reached, {len(funcs)} functions')
print('| file | edges reached / total | % | functions entered / in binary |')
print('|---|---|---|---|')
for f, (c, t, fc, ft) in per_file.items():
    print(f'| {f.replace("/work/main/", "")} | {c} / {t} | {100*c/t:.1f} | {fc} / {ft} |')
if tot[1]:
    print(f'| **total** | **{tot[0]} / {tot[1]}** | **{100*tot[0]/tot[1]:.1f}** | {tot[2]} / {tot[3]} |')
