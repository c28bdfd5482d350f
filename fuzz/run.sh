#!/usr/bin/env bash
# Fuzzes tokit's readers of untrusted files with AFL++ (cargo-afl), then replays every
# committed corpus file and crash regression through the same binaries.
#
#   fuzz/run.sh SECONDS [TARGET...]     # default: every target, SECONDS each
#   FUZZ_EXECS=1000000 fuzz/run.sh 0    # instead: until that many executions each
#
# Targets: gguf, safetensors, safetensors_index, hf_config, tokenizer, tokit_ron,
# rhai_options, tensor_io (fuzz/src/bin/).
# Seeds: fuzz/seeds/TARGET; found inputs: fuzz/out/TARGET (not committed); the minimised
# corpora that are committed: fuzz/corpus/TARGET; inputs that once crashed: fuzz/crashes/TARGET.
# Exits non-zero when a run finds a crash or a hang, or a committed input fails.
# Needs cargo-afl (`cargo install cargo-afl && cargo afl config --build`).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
limit=(-V "$secs")
[[ -n "${FUZZ_EXECS:-}" ]] && limit=(-E "$FUZZ_EXECS")
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] ||
    targets=(gguf safetensors safetensors_index hf_config tokenizer tokit_ron rhai_options tensor_io)

cargo afl build --release --quiet
# Scratch files on a RAM disk where there is one: each execution writes its input there.
[[ -d /dev/shm && -w /dev/shm ]] && export TMPDIR=/dev/shm
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_NO_AFFINITY=1 AFL_SUPPRESS_ENV_WARNING=1
status=0
for t in "${targets[@]}"; do
    bin="target/release/$t"
    # Replay what is committed: the corpus and every input that once crashed.
    for f in corpus/"$t"/* crashes/"$t"/*; do
        [[ -f "$f" ]] || continue
        if ! timeout 10 "$bin" <"$f" >/dev/null 2>&1; then
            echo "fuzz: $t: committed input $f fails" >&2
            status=1
        fi
    done
    out="out/$t"
    rm -rf "$out"; mkdir -p out
    seeds="seeds/$t"
    [[ -d "corpus/$t" ]] && seeds="corpus/$t"
    cargo afl fuzz "${limit[@]}" -t 2000 -i "$seeds" -o "$out" -- "$bin" >"out-$t.log" 2>&1 || {
        echo "fuzz: $t: afl-fuzz failed:" >&2
        tail -20 "out-$t.log" >&2
        status=1
        continue
    }
    stats="$out/default/fuzzer_stats"
    execs=$(awk -F': *' '/^execs_done/ {print $2}' "$stats")
    crashes=$(awk -F': *' '/^saved_crashes/ {print $2}' "$stats")
    hangs=$(awk -F': *' '/^saved_hangs/ {print $2}' "$stats")
    run_time=$(awk -F': *' '/^run_time/ {print $2}' "$stats")
    echo "fuzz: $t: $execs executions in ${run_time} s, $crashes crashes, $hangs hangs"
    if [[ "$crashes" != 0 || "$hangs" != 0 ]]; then
        ls "$out"/default/crashes "$out"/default/hangs >&2
        status=1
    fi
    rm -f "out-$t.log"
done
exit $status
