#!/usr/bin/env python3
"""Make a small DeepSeek-V4 checkpoint and its reference outputs.

Runs wherever torch and transformers (>= 5.17, model_type "deepseek_v4") are
installed; the GPU machine has both. It writes, into --out:

  config.json, model.safetensors   the checkpoint, as transformers saves it
                                   (upstream DeepSeek tensor names; linear and
                                   embedding weights in bf16, the rest fp32)
  golden.safetensors               reference tensors computed by transformers
                                   in fp32 from that checkpoint (see below)
  golden.json                      the same token ids, plus a description

golden.safetensors holds, for each prompt P in {a, b}:
  P.prompt_ids       int64 [L]          the prompt
  P.prefill_logits   fp32  [L, V]       logits of one forward over the prompt
  P.decode_ids       int64 [N]          greedy continuation, one token a step
  P.decode_logits    fp32  [N, V]       logits of each decode step (step i
                                        feeds decode_ids[i-1], step 0 feeds
                                        nothing new: it is prefill's last row)
  P.chunk_logits     fp32  [L-c, V]     logits of prompt[c:] when the prompt
                                        is fed as two chunks [0:c], [c:L]
  P.hidden.K         fp32  [L, hc, D]   residual streams after layer K-1
                                        (K=0: embeddings), for debugging
  rope.main.inv_freq, rope.compress.inv_freq   fp32 [r/2]  rotary tables

Every parameter is drawn at random (no zeros), so sinks, position biases,
routing biases, hash tables and hyper-connection mixes all matter.

--format fp4 / fp8 writes the checkpoint as DeepSeek released V4 instead
(flat upstream names, attn.kv_norm, quantization_config in config.json):
  fp4  FP8 e4m3 linears with E8M0 scales per 128x128 block (scale_fmt ue8m0),
       routed experts as packed FP4 e2m1 (I8 [N, K/2], element 2i in the low
       nibble) with E8M0 scales per 1x32; expert_dtype "fp4"  (V4-Flash)
  fp8  FP8 linears and experts with F32 block scales; expert_dtype "fp8"  (-Base)
Which matrices are quantized follows the official inference code: attn.wq_a,
wq_b, wkv, wo_b, indexer.wq_b and the shared experts are FP8; wo_a,
indexer.weights_proj, the router gate, embed and head stay bf16; compressor
wkv/wgate are stored f32. The goldens are transformers' fp32 outputs on the
*dequantized* weights (activations not quantized). act_quant.safetensors holds
torch's reference of the activation quantization (e4m3, 1x128 groups, with and
without power-of-two scales) for the engine's emulation to be checked against.
"""
import argparse, json, os
import torch
from safetensors.torch import save_file
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--config", help="JSON file of DeepseekV4Config overrides")
p.add_argument("--prompt-a", type=int, default=45)
p.add_argument("--prompt-b", type=int, default=7)
p.add_argument("--decode", type=int, default=40)
p.add_argument("--chunk", type=int, default=13)
p.add_argument("--std", type=float, default=0.08)
p.add_argument("--device", default="cpu", help="where the reference runs (cpu or cuda); fp32 either way")
p.add_argument("--no-hidden", action="store_true", help="skip the per-layer hidden states (large models)")
p.add_argument("--format", default="bf16", choices=["bf16", "fp4", "fp8"],
               help="checkpoint format: transformers' bf16, or the released FP8/FP4 layout")
p.add_argument("--keep-dequantized", action="store_true",
               help="keep OUT/dequantized, the reference's transformers checkpoint of the same "
                    "(dequantized) weights, e.g. to time it against the quantized one")
args = p.parse_args()
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

TINY = dict(
    vocab_size=320, hidden_size=64, num_hidden_layers=5,
    layer_types=["heavily_compressed_attention", "compressed_sparse_attention", "sliding_attention",
                 "compressed_sparse_attention", "heavily_compressed_attention"],
    mlp_layer_types=["hash_moe", "hash_moe", "moe", "moe", "moe"],
    num_attention_heads=4, num_key_value_heads=1, head_dim=32, partial_rotary_factor=0.25,
    q_lora_rank=48, o_groups=2, o_lora_rank=24,
    n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
    sliding_window=8, compress_rates={"compressed_sparse_attention": 4, "heavily_compressed_attention": 16},
    index_n_heads=4, index_head_dim=16, index_topk=3,
    hc_mult=4, hc_sinkhorn_iters=20, swiglu_limit=1.0, routed_scaling_factor=1.5,
    rope_theta=10000.0, compress_rope_theta=160000.0,
    rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024,
                     "beta_fast": 32.0, "beta_slow": 1.0},
    max_position_embeddings=4096, bos_token_id=0, eos_token_id=1, tie_word_embeddings=False,
)
overrides = json.load(open(args.config)) if args.config else {}
cfg = DeepseekV4Config(**{**TINY, **overrides})
torch.manual_seed(args.seed)
model = DeepseekV4ForCausalLM(cfg).float().eval()

BF16 = ("embed_tokens", "lm_head", "_proj", "experts.gate_up_proj", "experts.down_proj", "gate.weight")
with torch.no_grad():
    for name, prm in model.named_parameters():
        if name.endswith("norm.weight"):
            prm.copy_(1.0 + 0.2 * torch.randn_like(prm))
        elif "embed_tokens" in name:
            prm.normal_(0.0, 1.0)
        elif name.endswith(".scale") or name.endswith("hc_scale"):
            prm.copy_(1.0 + 0.3 * torch.randn_like(prm))
        elif name.endswith(".base") or name.endswith("hc_base") or name.endswith("sinks") or "position_bias" in name:
            prm.normal_(0.0, 0.5)
        else:
            prm.normal_(0.0, args.std * (64 / cfg.hidden_size) ** 0.5)
    for name, buf in model.named_buffers():
        if name.endswith("e_score_correction_bias"):
            buf.normal_(0.0, 0.1)
        elif name.endswith("tid2eid"):
            rows = [torch.randperm(cfg.n_routed_experts)[: cfg.num_experts_per_tok] for _ in range(cfg.vocab_size)]
            buf.copy_(torch.stack(rows))
    for name, prm in model.named_parameters():  # checkpoint precision: bf16 for big matrices
        if any(k in name for k in BF16) and prm.dim() >= 2:
            prm.data = prm.data.to(torch.bfloat16)

os.makedirs(args.out, exist_ok=True)
# Quantized formats: the transformers checkpoint (dequantized weights) goes to
# a side directory the reference is run from; --out gets the released layout.
hf_dir = args.out if args.format == "bf16" else os.path.join(args.out, "dequantized")
model.save_pretrained(hf_dir, safe_serialization=True)
if args.format != "bf16":
    import sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from quantize_checkpoint import quantize_checkpoint
    quantize_checkpoint(hf_dir, args.out, args.format)
ref = DeepseekV4ForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
if args.format == "bf16":
    for (n1, a), (n2, b) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert n1 == n2 and torch.equal(a.float(), b.float()), f"round trip changed {n1}"
del model
ref = ref.to(args.device)

gen = torch.Generator().manual_seed(args.seed + 1)
out, meta = {}, {"config": cfg.to_dict(), "prompts": {}}

@torch.no_grad()
def run(tag, length):
    ids = torch.randint(2, cfg.vocab_size, (1, length), generator=gen).to(args.device)
    o = ref(input_ids=ids, use_cache=True, output_hidden_states=not args.no_hidden)
    cache = o.past_key_values
    out[f"{tag}.prompt_ids"] = ids[0]
    out[f"{tag}.prefill_logits"] = o.logits[0].float()
    for k, h in enumerate((o.hidden_states or ())[:-1]):
        out[f"{tag}.hidden.{k}"] = h[0].float()
    logits, toks, rows = o.logits[0, -1], [], []
    for _ in range(args.decode):
        t = int(logits.argmax())
        toks.append(t); rows.append(logits.float())
        step = ref(input_ids=torch.tensor([[t]], device=args.device), past_key_values=cache, use_cache=True)
        cache, logits = step.past_key_values, step.logits[0, -1]
    out[f"{tag}.decode_ids"] = torch.tensor(toks, dtype=torch.int64)
    out[f"{tag}.decode_logits"] = torch.stack(rows)
    c = min(args.chunk, length - 1)
    first = ref(input_ids=ids[:, :c], use_cache=True)
    second = ref(input_ids=ids[:, c:], past_key_values=first.past_key_values, use_cache=True)
    out[f"{tag}.chunk_logits"] = second.logits[0].float()
    err = (second.logits[0] - o.logits[0, c:]).abs().max().item()
    meta["prompts"][tag] = {"prompt_ids": ids[0].tolist(), "decode_ids": toks, "chunk": c,
                            "chunk_vs_prefill_max_abs_diff": err}

run("a", args.prompt_a)
run("b", args.prompt_b)
for kind in ("main", "compress"):  # the rotary frequency tables, for debugging rope
    out[f"rope.{kind}.inv_freq"] = getattr(ref.model.rotary_emb, f"{kind}_inv_freq").float()
save_file({k: v.contiguous().cpu() for k, v in out.items()}, os.path.join(args.out, "golden.safetensors"))
meta["transformers"] = __import__("transformers").__version__
meta["torch"] = torch.__version__
meta["format"] = args.format
json.dump(meta, open(os.path.join(args.out, "golden.json"), "w"), indent=1)
if args.format != "bf16" and not args.keep_dequantized:
    import shutil
    shutil.rmtree(hf_dir)  # the dequantized copy is only the reference's input
print(json.dumps(meta["prompts"], indent=None)[:3000])
