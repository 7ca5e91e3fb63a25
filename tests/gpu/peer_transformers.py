#!/usr/bin/env python3
"""The peer in the same run: transformers' DeepseekV4ForCausalLM on the same
fixture and GPU. Times prefill of the golden prompt length and decode steps
at batch 1 and 8 (median after warm-up, CUDA-synchronized), under
torch.autocast(bfloat16) (plain dtype=bfloat16 fails in transformers 5.17
with "expected mat1 and mat2 to have the same dtype") and in fp32.
Prints PEER lines: usage peer_transformers.py MODEL_DIR [PROMPT_LEN]"""
import statistics, sys, time

import torch
from transformers import DeepseekV4ForCausalLM

model_dir = sys.argv[1]
L = int(sys.argv[2]) if len(sys.argv) > 2 else 2100
model = DeepseekV4ForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda().eval()
vocab = model.config.vocab_size
torch.manual_seed(0)


def timed(fn, runs, warmup=2):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


for precision in ("bf16-autocast", "fp32"):
    ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16-autocast"
           else torch.autocast("cuda", enabled=False))
    with torch.no_grad(), ctx:
        ids = torch.randint(2, vocab, (1, L), device="cuda")
        prefill = timed(lambda: model(input_ids=ids, use_cache=True), runs=3, warmup=1)
        print(f"PEER transformers {precision} prefill tokens={L}: {prefill:.2f} ms", flush=True)
        for batch in (1, 8):
            prompt = torch.randint(2, vocab, (batch, L), device="cuda")
            cache = model(input_ids=prompt, use_cache=True).past_key_values
            nxt = torch.randint(2, vocab, (batch, 1), device="cuda")

            def step():
                nonlocal_cache[0] = model(input_ids=nxt, past_key_values=nonlocal_cache[0],
                                          use_cache=True).past_key_values

            nonlocal_cache = [cache]
            ms = timed(step, runs=10)
            print(f"PEER transformers {precision} decode batch={batch} context={L}: {ms:.2f} ms/step",
                  flush=True)
