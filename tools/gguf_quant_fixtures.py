#!/usr/bin/env python3
"""Independent checks of tokit's GGUF dequantisers (run by hand; the output is committed).

Writes engine/model/tests/fixtures/quants.gguf: for every GGUF type tokit reads, one tensor
`<TYPE>` of that type and one F32 tensor `<TYPE>.expected` holding what gguf-py's
`gguf.quants.dequantize` makes of it. tokit's reader must give exactly (bit for bit) the
expected values (`engine/model/tests/quants.rs`).

Where gguf-py has a quantizer (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) the blocks come from
quantizing seeded normal numbers. For the k-quants (Q4_K, Q5_K, Q6_K) gguf-py only
dequantises, so the blocks are seeded random bytes laid out as llama.cpp's block_q4_K,
block_q5_K and block_q6_K (ggml-common.h), with their f16 scales drawn finite.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install gguf numpy
    /tmp/v/bin/python tools/gguf_quant_fixtures.py
"""
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

ROWS, COLS = 4, 512  # two k-quant super-blocks (256) per row, sixteen 32-blocks
rng = np.random.default_rng(20261203)


def f16_bytes(n, lo=-2.0, hi=2.0):
    """n finite half-precision numbers, as bytes."""
    return rng.uniform(lo, hi, n).astype(np.float16).view(np.uint8)


def k_blocks(kind, n_blocks):
    """Random k-quant blocks: the quantised bits random, the scales finite."""
    out = []
    for _ in range(n_blocks):
        if kind == T.Q4_K:  # d, dmin (f16), scales[12], qs[128]
            b = np.concatenate([f16_bytes(2, 0.0, 0.1), rng.integers(0, 256, 12 + 128, dtype=np.uint8)])
        elif kind == T.Q5_K:  # d, dmin (f16), scales[12], qh[32], qs[128]
            b = np.concatenate([f16_bytes(2, 0.0, 0.1), rng.integers(0, 256, 12 + 32 + 128, dtype=np.uint8)])
        elif kind == T.Q6_K:  # ql[128], qh[64], scales[16] (int8), d (f16)
            b = np.concatenate([rng.integers(0, 256, 128 + 64 + 16, dtype=np.uint8), f16_bytes(1, -0.1, 0.1)])
        else:
            raise ValueError(kind)
        out.append(b)
    return np.concatenate(out)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "engine", "model", "tests", "fixtures", "quants.gguf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w = gguf.GGUFWriter(path, arch="quants")
    w.add_string("tokit.fixture", "gguf-py dequantize reference, tools/gguf_quant_fixtures.py")
    for kind in [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]:
        if kind in (T.Q4_K, T.Q5_K, T.Q6_K):
            block, size = gguf.GGML_QUANT_SIZES[kind]
            raw = k_blocks(kind, ROWS * COLS // block).reshape(ROWS, COLS // block * size)
        else:
            x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
            # A few exact zeros and large values exercise the edge cases of the scales.
            x[0, :32] = 0.0
            x[1, 5] = 40.0
            raw = quantize(x, kind)
        expected = dequantize(raw, kind).astype(np.float32)
        assert expected.shape == (ROWS, COLS) and np.isfinite(expected).all(), kind.name
        w.add_tensor(kind.name, raw, raw_dtype=kind)
        w.add_tensor(kind.name + ".expected", expected)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
