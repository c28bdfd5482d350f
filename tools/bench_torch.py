#!/usr/bin/env python3
"""PyTorch + transformers side of `tokit bench forward`: the same model file, the same
token sequence (7919·i + 1 mod V), the same thread count, and the same timing as tokit
(one warm-up run, then the best of `--repeat`).

    python3 tools/bench_torch.py MODEL.gguf --tokens 128 --threads 2
    target/release/tokit bench forward MODEL.gguf --tokens 128

    # what tools/bench_vs_torch.sh runs: two forward lengths, one decode, one matmul
    python3 tools/bench_torch.py MODEL.gguf --tokens 128 512 --decode-steps 128 --matmul 1024

Works for a .gguf file or a Hugging Face model directory (Llama, Mamba2, ...). Needs
`pip install torch transformers gguf` (run by hand; never in CI). Prints the same lines as
tokit (`forward  N tokens: ...`, `decode   S steps: ...`, `matmul ...`) so the ratio is
read off directly.
"""
import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", help="a .gguf file or a Hugging Face model directory")
    ap.add_argument("--tokens", type=int, nargs="+", default=[128],
                    help="full-sequence forward lengths")
    ap.add_argument("--decode-steps", type=int, default=None,
                    help="incremental decoding steps (default: the first --tokens; 0: none)")
    ap.add_argument("--matmul", type=int, default=0,
                    help="also time an N x N x N f32 matmul (a @ b.T), as `tokit bench matmul`")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)

    def best(f, repeat=args.repeat):
        f()
        t = float("inf")
        for _ in range(max(1, repeat)):
            s = time.perf_counter()
            f()
            t = min(t, time.perf_counter() - s)
        return t

    if args.model.endswith(".gguf"):
        d, f = os.path.split(os.path.abspath(args.model))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    mamba = "mamba" in model.config.model_type
    v = model.config.vocab_size
    steps = args.tokens[0] if args.decode_steps is None else args.decode_steps
    longest = max(args.tokens + [steps])
    ids = torch.tensor([[(i * 7919 + 1) % v for i in range(longest)]])
    print(f"model {args.model} (torch {torch.__version__}, {args.threads} threads, "
          f"{torch.backends.cpu.get_cpu_capability()})")

    with torch.inference_mode():
        for n in args.tokens:
            # use_cache=False: the full forward builds no cache (tokit's forward keeps none
            # either unless asked).
            full = best(lambda: model(ids[:, :n], use_cache=False))
            print(f"forward  {n} tokens: {full * 1e3:.1f} ms, {n / full:.1f} tokens/s")

        def decode():
            past = None
            for t in range(steps):
                if mamba:
                    # transformers >= 5.2x names the conv + SSM state cache `cache`.
                    out = model(ids[:, t : t + 1], cache=past, use_cache=True)
                    past = out.cache
                else:
                    out = model(ids[:, t : t + 1], past_key_values=past, use_cache=True)
                    past = out.past_key_values

        if steps > 0:
            dec = best(decode)
            print(f"decode   {steps} steps:  {dec * 1e3:.1f} ms, {steps / dec:.1f} tokens/s")

        if args.matmul > 0:
            n = args.matmul
            a = torch.tensor([((i % 97) - 48.0) / 97.0 for i in range(n * n)]).reshape(n, n)
            b = torch.tensor([((i % 89) - 44.0) / 89.0 for i in range(n * n)]).reshape(n, n)
            t = best(lambda: a @ b.T, repeat=max(5, args.repeat))
            print(f"matmul {n}x{n}x{n} on torch: {t * 1e3:.2f} ms, {2 * n**3 / t / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
