#!/usr/bin/env python3
"""PyTorch + transformers side of `tokit bench forward`: the same model file, the same
token sequence (7919·i + 1 mod V), the same thread count, best of `--repeat` runs.

    python3 tools/bench_torch.py MODEL.gguf --tokens 128 --threads 2
    target/release/tokit bench forward MODEL.gguf --tokens 128

Needs `pip install torch transformers gguf` (run by hand; never in CI). Prints the same
two lines as tokit so the ratio is read off directly.
"""
import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a .gguf file or a Hugging Face model directory")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    if args.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(args.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
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
        full = best(lambda: model(ids))

        def decode():
            past = None
            for t in range(n):
                out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
                past = out.past_key_values

        dec = best(decode)
    print(f"model {args.model} (torch {torch.__version__}, {args.threads} threads)")
    print(f"forward  {n} tokens: {full * 1e3:.1f} ms, {n / full:.1f} tokens/s")
    print(f"decode   {n} steps:  {dec * 1e3:.1f} ms, {n / dec:.1f} tokens/s")


if __name__ == "__main__":
    main()
