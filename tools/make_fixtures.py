#!/usr/bin/env python3
"""Write the golden fixtures of the `transformer` plugin: tiny random-weight models in
Hugging Face layout plus their reference logits, computed by PyTorch + transformers.

Run by hand (CI never installs PyTorch); the outputs are committed:

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers safetensors
    /tmp/fx/bin/python tools/make_fixtures.py            # -> tests/fixtures/transformer/<name>/
    /tmp/fx/bin/python tools/make_fixtures.py llada      # -> tests/fixtures/llada/<name>/ (see below)

Each fixture directory holds `config.json` (with `"tokenizer": "ids"`: the model has no
tokenizer), `model.safetensors` (float32) and `reference.json`:

    tokens      the fixed input sequence (length 40, more than one 32-query block)
    logits      float32 reference logits [T, V] of the clean forward pass
    greedy      the greedy continuation of 8 tokens (argmax of repeated full forwards)
    ablations   logits with positions [7, 20] removed from every query's keys (an attention
                mask with zeros there; positions keep their ids)
    versions    torch / transformers used

Weights are drawn from N(0, 0.1^2) (norm weights 1 + N(0, 0.1^2)) rather than the tiny
default init, so every term of the forward pass moves the logits measurably.
"""

import json
import os
import sys

import torch
import transformers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "transformer")
T = 40
N_NEW = 8
ABLATE = [7, 20]


def rows(t):
    """A [T, V] tensor as nested lists, each value rounded to 8 significant digits (a
    relative error below 1e-8, far inside the 1e-4 parity tolerance) to keep files small."""
    return [[float(f"{x:.8g}") for x in row] for row in t.tolist()]


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            if p.dim() == 1 and ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + noise)
            else:
                p.copy_(noise)


def tokens_for(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (T,), generator=g).tolist()


def write(name, model, vocab, seed, old_layout=False):
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    model.eval()
    ids = tokens_for(vocab, seed)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
        # Position ablation by attention mask: keys ABLATE removed from every query,
        # positions keep their ids (HF's padding mask does exactly this).
        mask = torch.ones(1, T, dtype=torch.long)
        mask[0, ABLATE] = 0
        ablated = model(torch.tensor([ids]), attention_mask=mask).logits[0].float()
        # Greedy continuation by plain full forwards (generate() would infer an attention
        # mask from a pad token id, which random prompts may contain).
        seq = list(ids)
        for _ in range(N_NEW):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        gen = seq[T:]
    model.save_pretrained(out, safe_serialization=True)
    # Drop files we do not need (generation_config.json), keep config + weights.
    for f in os.listdir(out):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out, f))
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["tokenizer"] = "ids"
    if old_layout:
        # The layout written before transformers 5: rope settings at the top level.
        params = cfg.pop("rope_parameters", None) or {}
        cfg["rope_theta"] = params.pop("rope_theta")
        rope_type = params.pop("rope_type", "default")
        cfg["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **params}
        if "dtype" in cfg:
            cfg["torch_dtype"] = cfg.pop("dtype")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    ref = {
        "tokens": ids,
        "logits": rows(logits),
        "greedy": gen,
        "ablations": [{"ablate": ABLATE, "method": "attention", "logits": rows(ablated)}],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KiB, logits {tuple(logits.shape)}, greedy {gen}")


def build(cls, cfg, seed):
    torch.manual_seed(seed)
    model = cls(cfg)
    randomize(model, seed)
    if getattr(cfg, "tie_word_embeddings", False):
        model.tie_weights()
    return model.float()


def main():
    common = dict(attn_implementation="eager")

    # GPT-2: Conv1D weights [in, out], learned positions, LayerNorm, gelu_new, tied head.
    cfg = GPT2Config(
        vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        activation_function="gelu_new", bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common,
    )
    write("gpt2", build(GPT2LMHeadModel, cfg, 1), 128, 101)

    # Llama with grouped-query attention (4 query heads over 2 kv heads), tied head.
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, rope_theta=10000.0, rms_norm_eps=1e-5, **common,
    )
    write("llama_gqa_tied", build(LlamaForCausalLM, cfg, 2), 128, 102)

    # Llama, untied head, llama3 rope scaling, explicit head_dim != hidden / heads, one kv head.
    cfg = LlamaConfig(
        vocab_size=160, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
        tie_word_embeddings=False, rms_norm_eps=1e-6,
        rope_parameters={
            "rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 16,
        },
        **common,
    )
    write("llama_untied_llama3", build(LlamaForCausalLM, cfg, 3), 160, 103)

    # Qwen2: biases on q/k/v (not o), GQA, large rope theta, tied head.
    cfg = Qwen2Config(
        vocab_size=144, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True, rope_theta=1000000.0, rms_norm_eps=1e-6, **common,
    )
    write("qwen2", build(Qwen2ForCausalLM, cfg, 4), 144, 104)

    # Mistral with a sliding window shorter than the sequence.
    cfg = MistralConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        sliding_window=8, tie_word_embeddings=False, rope_theta=10000.0, **common,
    )
    write("mistral_window", build(MistralForCausalLM, cfg, 5), 128, 105)

    # Llama with linear rope scaling, config rewritten in the old (pre-transformers-5) layout:
    # top-level rope_theta and rope_scaling {"type": "linear", "factor": 2}.
    cfg = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "linear", "rope_theta": 500000.0, "factor": 2.0},
        **common,
    )
    write("llama_old_layout", build(LlamaForCausalLM, cfg, 6), 128, 106, old_layout=True)


# ---------------------------------------------------------------------------------------
# LLaDA (masked diffusion). transformers has no class for it, so the reference is written
# here from the published architecture (Nie et al. 2025; `modeling_llada.py` of the released
# checkpoints): a Llama-style Transformer (RMSNorm, rotary positions with rotate-half,
# SwiGLU with `ff_proj` the gated branch and `up_proj` the linear one, grouped-query heads)
# whose attention has no causal mask, under the checkpoint's tensor names
# `model.transformer.{wte, blocks.N.*, ln_f, ff_out}`. Outputs: tests/fixtures/llada/<name>/
# with `reference.json` holding `tokens` (about 30 % of them the mask token), `masked`
# (those positions), `logits` [T, embedding_size], and `ablations` (keys removed by an
# attention mask, as for the Transformer fixtures).

LLADA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "llada")
LLADA_T = 24


class LladaReference(torch.nn.Module):
    """The LLaDA forward pass, float32, bidirectional; `keep` removes keys (ablation)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d, m, h, hkv = c["d_model"], c["mlp_hidden_size"], c["n_heads"], c["n_kv_heads"]
        dh = d // h
        bias = c["include_bias"]
        qkv_bias = bias or c.get("include_qkv_bias", False)
        lin = torch.nn.Linear
        self.wte = torch.nn.Embedding(c["embedding_size"], d)
        self.blocks = torch.nn.ModuleList()
        for _ in range(c["n_layers"]):
            b = torch.nn.Module()
            b.attn_norm = self.norm(d, bias)
            b.q_proj, b.k_proj, b.v_proj = lin(d, h * dh, qkv_bias), lin(d, hkv * dh, qkv_bias), lin(d, hkv * dh, qkv_bias)
            b.attn_out = lin(d, d, bias)
            b.ff_norm = self.norm(d, bias)
            b.ff_proj, b.up_proj, b.ff_out = lin(d, m, bias), lin(d, m, bias), lin(m, d, bias)
            self.blocks.append(b)
        self.ln_f = self.norm(d, bias)
        self.ff_out = None if c["weight_tying"] else lin(d, c["embedding_size"], bias)

    @staticmethod
    def norm(d, bias):
        n = torch.nn.Module()
        n.weight = torch.nn.Parameter(torch.ones(d))
        n.bias = torch.nn.Parameter(torch.zeros(d)) if bias else None
        return n

    def rms(self, n, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"])
        return x * n.weight + (n.bias if n.bias is not None else 0.0)

    def rope(self, x):
        t, dh = x.shape[-2], x.shape[-1]
        inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, dh, 2, dtype=torch.float) / dh))
        ang = torch.outer(torch.arange(t, dtype=torch.float), inv)
        ang = torch.cat((ang, ang), -1)
        x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
        return x * ang.cos() + torch.cat((-x2, x1), -1) * ang.sin()

    def forward(self, ids, keep=None):
        c = self.c
        h, hkv = c["n_heads"], c["n_kv_heads"]
        x = self.wte(torch.tensor(ids))
        t, d = x.shape
        dh = d // h
        bias = torch.zeros(t, t)  # no causal mask: every query sees every key
        if keep is not None:
            bias[:, [not k for k in keep]] = float("-inf")
        for b in self.blocks:
            y = self.rms(b.attn_norm, x)
            q = self.rope(b.q_proj(y).view(t, h, dh).transpose(0, 1))
            k = self.rope(b.k_proj(y).view(t, hkv, dh).transpose(0, 1)).repeat_interleave(h // hkv, 0)
            v = b.v_proj(y).view(t, hkv, dh).transpose(0, 1).repeat_interleave(h // hkv, 0)
            att = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5 + bias, -1) @ v
            x = x + b.attn_out(att.transpose(0, 1).reshape(t, d))
            y = self.rms(b.ff_norm, x)
            x = x + b.ff_out(torch.nn.functional.silu(b.ff_proj(y)) * b.up_proj(y))
        x = self.rms(self.ln_f, x)
        return x @ self.wte.weight.T if self.ff_out is None else self.ff_out(x)

    def state(self):
        """Tensors under the released checkpoint's names."""
        out = {}
        for name, p in self.named_parameters():
            out["model.transformer." + name] = p.detach().contiguous()
        return out


def write_llada(name, c, seed):
    from safetensors.torch import save_file

    out = os.path.join(LLADA_ROOT, name)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    model = LladaReference(c)
    randomize(model, seed)
    g = torch.Generator().manual_seed(seed + 100)
    ids = torch.randint(0, c["vocab_size"], (LLADA_T,), generator=g).tolist()
    ids = [i if i != c["mask_token_id"] else 0 for i in ids]
    masked = sorted(torch.randperm(LLADA_T, generator=g)[: round(0.3 * LLADA_T)].tolist())
    for j in masked:
        ids[j] = c["mask_token_id"]
    ablate = [3, 11]
    keep = [j not in ablate for j in range(LLADA_T)]
    with torch.no_grad():
        logits = model(ids)
        ablated = model(ids, keep)
        # The reference obeys its own rules: bidirectional (a change at the last position
        # moves the first position's logits) and it runs with no mask token at all.
        later = list(ids)
        later[-1] = (later[-1] + 1) % c["vocab_size"]
        assert (model(later)[0] - logits[0]).abs().max() > 1e-4, "not bidirectional"
        clean = [i if i != c["mask_token_id"] else 1 for i in ids]
        assert torch.isfinite(model(clean)).all()
    save_file(model.state(), os.path.join(out, "model.safetensors"))
    cfg = {
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "tokenizer": "ids",
        "activation_type": "silu",
        "alibi": False,
        "attention_layer_norm": False,
        "block_group_size": 1,
        "layer_norm_type": "rms",
        "rope": True,
        "max_sequence_length": 64,
        **c,
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    ref = {
        "tokens": ids,
        "masked": masked,
        "logits": rows(logits),
        "ablations": [{"ablate": ablate, "method": "attention", "logits": rows(ablated)}],
        "versions": {"torch": torch.__version__},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KiB, logits {tuple(logits.shape)}, masked {masked}")


def main_llada():
    base = dict(
        d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=120,
        embedding_size=128, mask_token_id=118, rope_theta=500000.0, rms_norm_eps=1e-5,
        weight_tying=False, include_bias=False, include_qkv_bias=False, block_type="llama",
    )
    # Grouped-query heads, untied head, an embedding padded beyond the vocabulary.
    write_llada("llada", base, 11)
    # Tied head, every linear and norm with a bias, one kv head per query head.
    write_llada("llada_tied_bias", {**base, "n_kv_heads": 4, "weight_tying": True, "include_bias": True,
                                    "embedding_size": 120}, 12)


MAMBA2_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "mamba2")


def write_mamba2(name, cfg, seed, extra_config=None):
    """A tiny random Mamba2ForCausalLM (transformers' pure-PyTorch path on CPU) with its
    logits and greedy continuation; `config.json` keeps transformers' own spelling
    (`time_step_limit` with `{"__float__": "Infinity"}`), plus `extra_config` fields."""
    from transformers import Mamba2ForCausalLM

    model = build(Mamba2ForCausalLM, cfg, seed)
    out = os.path.join(MAMBA2_ROOT, name)
    os.makedirs(out, exist_ok=True)
    model.eval()
    ids = tokens_for(cfg.vocab_size, seed + 100)
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0].float()
        seq = list(ids)
        for _ in range(N_NEW):
            seq.append(int(model(torch.tensor([seq]), use_cache=False).logits[0, -1].argmax()))
    model.save_pretrained(out, safe_serialization=True)
    for f in os.listdir(out):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(out, f))
    cfg_path = os.path.join(out, "config.json")
    with open(cfg_path) as f:
        c = json.load(f)
    c["tokenizer"] = "ids"
    c.update(extra_config or {})
    with open(cfg_path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    ref = {
        "tokens": ids,
        "logits": rows(logits),
        "greedy": seq[T:],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {size / 1024:.0f} KiB, logits {tuple(logits.shape)}, greedy {seq[T:]}")


def mamba2():
    from transformers import Mamba2Config

    small = dict(
        vocab_size=96, hidden_size=32, expand=2, head_dim=16, num_heads=4, state_size=8,
        num_hidden_layers=2, conv_kernel=4, layer_norm_epsilon=1e-5,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    # One group, a chunk size (7) that does not divide T = 40, tied head, no time-step limit.
    write_mamba2("g1_chunk7_tied", Mamba2Config(n_groups=1, chunk_size=7, tie_word_embeddings=True, **small), 11)
    # Two groups, chunks of 8 (dividing T), untied head, projection biases, a finite
    # time-step limit that clamps, and the fields older transformers wrote (and never read):
    # `norm_before_gate` and `rms_norm`, true as in Mamba-Codestral's config.
    write_mamba2(
        "g2_chunk8_untied",
        Mamba2Config(
            n_groups=2, chunk_size=8, tie_word_embeddings=False, use_bias=True,
            time_step_limit=(0.05, 0.5), **small,
        ),
        12,
        extra_config={"norm_before_gate": True, "rms_norm": True},
    )


if __name__ == "__main__":
    # `make_fixtures.py llada` or `make_fixtures.py mamba2` writes only those fixtures.
    if sys.argv[1:] == ["llada"]:
        sys.exit(main_llada())
    if sys.argv[1:] == ["mamba2"]:
        sys.exit(mamba2())
    main()
    main_llada()
    sys.exit(mamba2())
