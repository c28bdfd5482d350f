#!/usr/bin/env python3
"""Read a corpus analysis' Parquet table (`tokit analyze METRIC --corpus ... --output
OUT.parquet`, docs/corpus.md) with pandas (and polars, if installed) as it is, check its
columns and types against the summary JSON beside it, and print per-document means.

    python3 tools/read_corpus_parquet.py out/kjv.parquet

Not run by CI (pandas is no dependency of tokit); needs `pip install pandas pyarrow`.
"""
import json
import math
import sys
from pathlib import Path

import pandas as pd


def main(path: str) -> None:
    out = Path(path)
    df = pd.read_parquet(out)
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
    assert list(df.columns[:4]) == ["doc", "position", "token_id", "token"], df.columns
    assert str(df["doc"].dtype) == "int64" and str(df["position"].dtype) == "int32"
    assert len(df) == summary["tokens"], (len(df), summary["tokens"])
    assert df["doc"].nunique() == summary["documents"]
    assert df.sort_values(["doc", "position"]).index.equals(df.index), "rows not sorted"
    metric_cols = list(df.columns[4:])
    for c in metric_cols:
        assert str(df[c].dtype) == "float32", (c, df[c].dtype)
        want = summary["corpus"]["columns"].get(c, {}).get("mean")
        got = float(df[c].astype("float64").mean())  # pandas skips NaN
        if want is not None:
            assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), (c, got, want)
    print(f"pandas {pd.__version__}: {len(df)} rows, {df['doc'].nunique()} documents, "
          f"columns {list(df.columns)}")
    if metric_cols:
        print(df.groupby("doc")[metric_cols[0]].mean().describe())
    try:
        import polars as pl
    except ImportError:
        return
    p = pl.read_parquet(out)
    assert p.shape == df.shape, (p.shape, df.shape)
    print(f"polars {pl.__version__}: {p.shape[0]} rows, schema {dict(p.schema)}")


if __name__ == "__main__":
    main(sys.argv[1])
