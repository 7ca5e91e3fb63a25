"""Quantize a transformers DeepSeek-V4 checkpoint into the layout DeepSeek
released (used by make_dsv4_fixture.py --format fp4|fp8).

quantize_checkpoint(hf_dir, out_dir, fmt) reads hf_dir/model.safetensors,
writes out_dir/model.safetensors (quantized, official names) and
out_dir/config.json (with quantization_config and expert_dtype), and rewrites
hf_dir/model.safetensors with the *dequantized* values in fp32, so that
transformers run on hf_dir is the reference for the quantized checkpoint.
It also writes out_dir/act_quant.safetensors (torch's reference numerics)."""
import json
import os
import re

import torch
from safetensors.torch import load_file, save_file

BLOCK = 128  # FP8 weight block (both axes) and activation group
FP4_GROUP = 32
E4M3_MAX = 448.0
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
E2M1_MIDS = (E2M1_VALUES[1:] + E2M1_VALUES[:-1]) / 2

# Matrices the official inference code keeps in FP8 (Linear with the default
# dtype); wo_a, weights_proj, the gate, embed and head are explicitly bf16 there.
FP8_LINEAR = re.compile(r"\.attn\.(wq_a|wq_b|wkv|wo_b|indexer\.wq_b)\.weight$|"
                        r"\.ffn\.shared_experts\.w[123]\.weight$")
EXPERT = re.compile(r"\.ffn\.experts\.\d+\.w[123]\.weight$")
COMPRESSOR = re.compile(r"compressor\.(wkv|wgate)\.weight$")  # f32 in the official code


def official_name(name):
    n = name[len("model."):] if name.startswith("model.") else name
    n = {"embed_tokens.weight": "embed.weight", "lm_head.weight": "head.weight",
         "hc_head.hc_fn": "hc_head_fn", "hc_head.hc_base": "hc_head_base",
         "hc_head.hc_scale": "hc_head_scale"}.get(n, n)
    return re.sub(r"\.attn\.norm\.weight$", ".attn.kv_norm.weight", n)


def pow2_ceil(s):
    return torch.exp2(torch.ceil(torch.log2(s)))


def e8m0(scale):
    """Power-of-two f32 scales -> float8_e8m0fnu (the exponent byte)."""
    exp = torch.round(torch.log2(scale)).to(torch.int32) + 127
    assert int(exp.min()) >= 0 and int(exp.max()) <= 254, "scale outside E8M0"
    return exp.to(torch.uint8).view(torch.float8_e8m0fnu)


def quantize_fp8(w, pow2):
    """[N, K] -> (e4m3 [N, K], scale [ceil(N/128), ceil(K/128)], dequantized f32)."""
    n, k = w.shape
    nb, kb = -(-n // BLOCK), -(-k // BLOCK)
    pad = torch.zeros(nb * BLOCK, kb * BLOCK, dtype=torch.float32)
    pad[:n, :k] = w.float()
    blocks = pad.view(nb, BLOCK, kb, BLOCK)
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    s = amax / E4M3_MAX
    if pow2:
        s = pow2_ceil(s)
    q = (blocks / s[:, None, :, None]).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    deq = (q.float() * s[:, None, :, None]).view(nb * BLOCK, kb * BLOCK)[:n, :k]
    q = q.view(nb * BLOCK, kb * BLOCK)[:n, :k].contiguous()
    return q, (e8m0(s) if pow2 else s.contiguous()), deq.contiguous()


def e2m1_codes(x):
    """Nearest e2m1 code of each value (ties to the even code), saturating at 6."""
    a = x.abs().clamp(max=6.0)
    lo = torch.bucketize(a, E2M1_MIDS, right=False)
    hi = torch.bucketize(a, E2M1_MIDS, right=True)
    code = torch.where((lo != hi) & (lo % 2 == 1), hi, lo)
    return (code | torch.where(x < 0, 8, 0)).to(torch.uint8)


def quantize_fp4(w):
    """[N, K] -> (packed I8 [N, K/2], E8M0 scale [N, K/32], dequantized f32)."""
    n, k = w.shape
    g = w.float().view(n, k // FP4_GROUP, FP4_GROUP)
    s = pow2_ceil((g.abs().amax(dim=2) / 6.0).clamp(min=2.0 ** -120))
    codes = e2m1_codes(g / s[:, :, None]).view(n, k)
    mag = E2M1_VALUES[(codes & 7).long()]
    vals = torch.where((codes & 8) != 0, -mag, mag)
    deq = (vals.view(n, k // FP4_GROUP, FP4_GROUP) * s[:, :, None]).view(n, k)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).view(torch.int8)
    return packed.contiguous(), e8m0(s), deq.contiguous()


def act_quant(x, pow2):
    """The reference activation quantization: e4m3 per 1x128 group of the last
    axis, s = amax / 448 (a power of two, rounded up, with scale_fmt ue8m0)."""
    shape = x.shape
    g = x.float().reshape(-1, shape[-1] // BLOCK, BLOCK)
    s = g.abs().amax(dim=2, keepdim=True).clamp(min=1e-4) / E4M3_MAX
    if pow2:
        s = pow2_ceil(s)
    return ((g / s).to(torch.float8_e4m3fn).float() * s).reshape(shape)


def write_act_quant_reference(path):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(16, 4 * BLOCK, generator=gen) * torch.exp2(torch.randint(-8, 8, (16, 1), generator=gen).float())
    x[3, 5] = 300.0  # an outlier dominating one group
    x[5, :BLOCK] = 0.0  # an all-zero group (the 1e-4 floor)
    codes = torch.arange(256, dtype=torch.uint8)
    v = torch.randn(4096, generator=gen) * 40.0
    save_file({"x": x, "pow2": act_quant(x, True), "plain": act_quant(x, False),
               "e4m3_decoded": codes.view(torch.float8_e4m3fn).float(),
               "round_in": v, "round_e4m3": v.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)},
              path)


def quantize_tensors(src, fmt):
    """{hf name: tensor} -> ({official name: stored tensor}, {hf name: dequantized})."""
    pow2 = fmt == "fp4"
    out, deq_all = {}, {}
    for name, t in src.items():
        oname = official_name(name)
        if FP8_LINEAR.search(name) or (fmt == "fp8" and EXPERT.search(name)):
            q, s, deq = quantize_fp8(t, pow2)
        elif EXPERT.search(name):
            q, s, deq = quantize_fp4(t)
        else:
            stored = t.float() if COMPRESSOR.search(name) else t.to(torch.int32) if name.endswith("tid2eid") else t
            out[oname], deq_all[name] = stored, t
            continue
        out[oname] = q
        out[oname[: -len(".weight")] + ".scale"] = s
        deq_all[name] = deq
    return out, deq_all


def quantize_checkpoint(hf_dir, out_dir, fmt):
    pow2 = fmt == "fp4"
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    shards = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) \
        else ["model.safetensors"]
    weight_map = {}
    for shard in shards:
        out, deq_all = quantize_tensors(load_file(os.path.join(hf_dir, shard)), fmt)
        save_file(out, os.path.join(out_dir, shard), metadata={"format": "pt"})
        save_file(deq_all, os.path.join(hf_dir, shard), metadata={"format": "pt"})
        weight_map.update({n: shard for n in out})
        del out, deq_all
    if len(shards) > 1:
        json.dump({"metadata": {}, "weight_map": weight_map},
                  open(os.path.join(out_dir, "model.safetensors.index.json"), "w"), indent=1)
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": [BLOCK, BLOCK]}
    if pow2:
        cfg["quantization_config"]["scale_fmt"] = "ue8m0"
    cfg["expert_dtype"] = fmt
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    write_act_quant_reference(os.path.join(out_dir, "act_quant.safetensors"))
