#!/usr/bin/env python3
"""Write the golden fixtures of the `transformer` plugin: tiny random-weight models in
Hugging Face layout plus their reference logits, computed by PyTorch + transformers.

Run by hand (CI never installs PyTorch); the outputs are committed:

    python3 -m venv /tmp/fx && /tmp/fx/bin/pip install torch transformers safetensors
    /tmp/fx/bin/python tools/make_fixtures.py            # -> tests/fixtures/transformer/<name>/

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
    # `make_fixtures.py mamba2` writes only the Mamba2 fixtures.
    if sys.argv[1:] == ["mamba2"]:
        sys.exit(mamba2())
    main()
    sys.exit(mamba2())
