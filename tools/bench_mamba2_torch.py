#!/usr/bin/env python3
"""PyTorch + transformers side of `tokit bench forward` for Mamba2: writes (once) a random
~100M-parameter Mamba2ForCausalLM into MODEL_DIR, then times a full forward of N tokens and
N incremental decoding steps (with transformers' conv and SSM state cache) the same way as
tools/bench_torch.py: token sequence 7919·i + 1 mod V, best of `--repeat`, `--threads`.

    /tmp/fx/bin/python tools/bench_mamba2_torch.py /tmp/mamba2-100m --tokens 128 --threads 2
    target/release/tokit bench forward /tmp/mamba2-100m --tokens 128

transformers runs its pure-PyTorch path (no mamba_ssm kernels on CPU). Run by hand, never in
CI. The model: hidden 768, 24 layers, expand 2 (24 heads of 64), state 128, one group,
vocab 16384, chunk 256 (mamba2-130m's shape with a smaller vocabulary): 103M parameters.
"""
import argparse
import json
import os
import time


def make(path):
    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = Mamba2Config(
        vocab_size=16384, hidden_size=768, num_hidden_layers=24, expand=2, head_dim=64,
        num_heads=24, state_size=128, n_groups=1, conv_kernel=4, chunk_size=256,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    torch.manual_seed(0)
    model = Mamba2ForCausalLM(cfg).float()
    model.save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    c["tokenizer"] = "ids"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {path}: {n / 1e6:.1f}M parameters")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    if not os.path.exists(os.path.join(args.model_dir, "model.safetensors")):
        make(args.model_dir)
    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    model.eval()
    v = model.config.vocab_size
    n = args.tokens
    ids = torch.tensor([[(i * 7919 + 1) % v for i in range(n)]])

    def best(f):
        f()
        t = float("inf")
        for _ in range(max(1, args.repeat)):
            s = time.perf_counter()
            f()
            t = min(t, time.perf_counter() - s)
        return t

    with torch.inference_mode():
        full = best(lambda: model(ids, use_cache=False))

        def decode():
            cache = None
            for t in range(n):
                out = model(ids[:, t : t + 1], cache_params=cache, use_cache=True)
                cache = out.cache_params

        dec = best(decode)
    print(f"model {args.model_dir} (torch {torch.__version__}, {args.threads} threads)")
    print(f"forward  {n} tokens: {full * 1e3:.1f} ms, {n / full:.1f} tokens/s")
    print(f"decode   {n} steps:  {dec * 1e3:.1f} ms, {n / dec:.1f} tokens/s")


if __name__ == "__main__":
    main()
