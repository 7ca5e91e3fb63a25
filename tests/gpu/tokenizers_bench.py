#!/usr/bin/env python3
"""Peer measurement for the tokenizer: the Python `tokenizers` library (the
reference implementation) encoding one file in one call, single-threaded,
on the same machine and file as `moegraph tokenize --bench`.
Usage: tokenizers_bench.py TOKENIZER_JSON FILE [RUNS]"""
import os
import statistics
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one thread, like our bench
from tokenizers import Tokenizer  # noqa: E402

path, text_file = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
text = open(text_file, encoding="utf-8", errors="replace").read()
size = len(text.encode("utf-8"))
times = []
for _ in range(runs):
    tok = Tokenizer.from_file(path)  # fresh cache each run, like --cold
    t0 = time.perf_counter()
    ids = tok.encode(text, add_special_tokens=False).ids
    times.append(time.perf_counter() - t0)
med = statistics.median(times)
print(f"tokenizers: {size} bytes, {len(ids)} ids, one call, median of {runs}: "
      f"{med:.3f} s = {size / med / 1e6:.2f} MB/s")
