#!/usr/bin/env bash
# tokit against PyTorch + transformers on the CPU: the same model file, the same token
# sequence, the same thread count, the same timing (one warm-up, best of --repeat) on both
# sides. The two sides run alternately, ROUNDS times each, and each figure is the best
# over the rounds, so a burst of load on a shared machine hurts both sides alike.
#
#   tools/bench_vs_torch.sh MODEL.gguf                 # SmolLM2: forward 128 and 512, decode 128, matmul 1024
#   tools/bench_vs_torch.sh MODEL.gguf MAMBA2_DIR      # and a Mamba2 directory (tools/bench_mamba2_torch.py writes one)
#
# Environment: PYTHON (a python with torch, transformers, gguf; default python3),
# TOKIT (default target/release/tokit, built with `cargo build --release`), THREADS
# (default 2), ROUNDS (default 2), REPEAT (default 2), HALF (tokit's reduced-precision
# decode rows: "bf16 f16" by default, "" for none), MAMBA_TOKENS (Mamba2 forward length
# and decode steps, default 32: transformers' pure-PyTorch Mamba2 path takes seconds a
# step on a CPU). Takes 3 to 5 minutes on a 2-core machine without Mamba2, a few more
# with it. Prints the CPU, its vector extensions, tokit's GEMM path and the load, then a
# ratio table (tokit / PyTorch; above 1 means tokit is faster).
set -euo pipefail

MODEL=${1:?usage: tools/bench_vs_torch.sh MODEL.gguf [MAMBA2_DIR]}
MAMBA=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TOKIT=${TOKIT:-$ROOT/target/release/tokit}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
REPEAT=${REPEAT:-2}
HALF=${HALF-bf16 f16}
MT=${MAMBA_TOKENS:-32}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

[ -x "$TOKIT" ] || { echo "no tokit binary at $TOKIT: run cargo build --release" >&2; exit 1; }
"$PYTHON" -c 'import torch, transformers, gguf' 2>/dev/null || {
    echo "$PYTHON lacks torch/transformers/gguf: set PYTHON to a venv with them" \
         "(python3 -m venv V && V/bin/pip install torch transformers gguf safetensors numpy)" >&2
    exit 1
}
CFG="$OUT/tokit.ron"
echo "(backend: Cpu, threads: Some($THREADS))" > "$CFG"
tokit() { "$TOKIT" --config "$CFG" "$@" 2>/dev/null; }

echo "== machine"
grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "cores: $(nproc), threads used: $THREADS"
echo "vector extensions: $(grep -m1 -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_bf16|avx512_fp16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} (affects NumPy, not torch)"
echo "torch: $("$PYTHON" -c 'import torch, transformers; print(torch.__version__, "transformers", transformers.__version__, "cpu capability", torch.backends.cpu.get_cpu_capability())')"
echo "load before: $(uptime | sed 's/.*load average/load average/')"

for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r/$ROUNDS"
    {
        tokit bench forward "$MODEL" --tokens 128 --decode-steps 128 --repeat "$REPEAT"
        tokit bench forward "$MODEL" --tokens 512 --decode-steps 0 --repeat "$REPEAT"
        tokit bench matmul --size 1024 --repeat 10
        for w in $HALF; do
            tokit --cpu-weights "$w" bench forward "$MODEL" --tokens 128 --decode-steps 128 --repeat "$REPEAT" \
                | sed "s/^forward /$w-forward /; s/^decode /$w-decode /"
        done
    } | tee -a "$OUT/tokit.txt" | grep -E '^(model|[a-z0-9]*-?(forward|decode)|matmul)' || true
    "$PYTHON" "$ROOT/tools/bench_torch.py" "$MODEL" --tokens 128 512 --decode-steps 128 \
        --matmul 1024 --repeat "$REPEAT" --threads "$THREADS" 2>/dev/null | tee -a "$OUT/torch.txt"
    if [ -n "$MAMBA" ]; then
        tokit bench forward "$MAMBA" --tokens "$MT" --decode-steps "$MT" --repeat "$REPEAT" \
            | sed 's/^forward /mamba2-forward /; s/^decode /mamba2-decode /' | tee -a "$OUT/tokit.txt" | grep mamba2 || true
        "$PYTHON" "$ROOT/tools/bench_torch.py" "$MAMBA" --tokens "$MT" --decode-steps "$MT" \
            --repeat "$REPEAT" --threads "$THREADS" 2>/dev/null \
            | sed 's/^forward /mamba2-forward /; s/^decode /mamba2-decode /' | tee -a "$OUT/torch.txt" | grep mamba2 || true
    fi
done
echo "load after: $(uptime | sed 's/.*load average/load average/')"

"$PYTHON" - "$OUT/tokit.txt" "$OUT/torch.txt" "$MT" <<'PY'
import re, sys

def best(path):
    """Best figure per row over the rounds (throughputs: higher is better)."""
    rows = {}
    for line in open(path):
        m = re.match(r"(\S*forward|\S*decode)\s+(\d+) (tokens|steps):.*?([\d.]+) tokens/s", line)
        if m:
            key = f"{m.group(1)} {m.group(2)}"
            rows[key] = max(rows.get(key, 0.0), float(m.group(4)))
        m = re.match(r"matmul (\d+)x.*?([\d.]+) GFLOP/s", line)
        if m:
            key = f"matmul {m.group(1)}"
            rows[key] = max(rows.get(key, 0.0), float(m.group(2)))
        m = re.search(r"gemm path ([^;)\s]+)", line)
        if m:
            rows["gemm path"] = m.group(1)
        m = re.search(r"of the ([\d.]+) GFLOP/s f32 FMA peak", line)
        if m:
            rows["peak"] = max(rows.get("peak", 0.0), float(m.group(1)))
    return rows

t, p = best(sys.argv[1]), best(sys.argv[2])
print(f"\n== tokit (gemm path {t.get('gemm path', '?')}) vs PyTorch, best of all rounds")
print(f"| {'what':<22} | {'tokit':>14} | {'PyTorch':>14} | {'ratio':>6} |")
print(f"| {'-' * 22} | {'-' * 14} | {'-' * 14} | {'-' * 6} |")
mt = sys.argv[3]
for key in ["forward 128", "forward 512", "decode 128", "matmul 1024",
            f"mamba2-forward {mt}", f"mamba2-decode {mt}"]:
    if key in t and key in p:
        unit = "GFLOP/s" if key.startswith("matmul") else "tok/s"
        print(f"| {key:<22} | {t[key]:>6.1f} {unit:<7} | {p[key]:>6.1f} {unit:<7} | {t[key] / p[key]:>6.2f} |")
for w in ["bf16", "f16"]:
    key = f"{w}-decode 128"
    if key in t and "decode 128" in t:
        print(f"| tokit {key:<16} | {t[key]:>6.1f} tok/s   | {'':>14} | {t[key] / t['decode 128']:>6.2f} | (against tokit f32)")
if "peak" in t and "matmul 1024" in t:
    print(f"\nf32 FMA peak of these threads (best measured, register-only loop): {t['peak']:.0f} GFLOP/s;"
          f" tokit matmul 1024 at {100 * t['matmul 1024'] / t['peak']:.0f} %, PyTorch at"
          f" {100 * p.get('matmul 1024', 0) / t['peak']:.0f} %")
PY
