#!/usr/bin/env python3
"""AUC parity: the pipeline's model against scikit-learn's LogisticRegression on the same split.

Reads what a run of the pipeline stored: the curated training rows (what train fitted on), the holdout
curate routed away (what govern judged on) and govern's gate report. Fits scikit-learn's
LogisticRegression (standardised features, C from the spec's params, default 1.0) on the curated rows with
the spec's features computed as the pipeline computes them (identity or log1p numbers, night or
hour_of_day timestamps, booleans, one-hot categories, isNot) and the spec's positive class weight, scores
the holdout and prints both AUCs.

    python scripts/auc-parity.py [--spec SPEC.yaml] CURATED.parquet HOLDOUT.parquet GATE-REPORT.json

The spec defaults to contracts/models/fraud_lr.yaml. Needs pyarrow, numpy, pyyaml and scikit-learn (not
part of the test suite).
"""
import argparse
import json
import math
import time

import numpy as np
import pyarrow.parquet as pq
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def feature_values(f, v):
    """The columns one feature adds for value v, as the pipeline's featurize computes them."""
    if "oneHot" in f:
        return [float(v == c) for c in f["oneHot"]]
    if "isNot" in f:
        return [float(v != f["isNot"])]
    t = f.get("transform")
    if isinstance(v, bool):
        return [float(v)]
    if hasattr(v, "hour"):
        return [float(not 6 <= v.hour < 22)] if t == "night" else [float(v.hour)]
    x = float(v)
    return [math.log1p(max(x, 0.0))] if t == "log1p" else [x]


def features(path, spec):
    t = pq.read_table(path).to_pydict()
    target, positive = spec["target"], spec.get("positiveLabel")
    rows, labels = [], []
    for i in range(len(t[target])):
        values = [t[f["column"]][i] for f in spec["features"]]
        y = t[target][i]
        if y is None or any(v is None for v in values):
            continue
        row = []
        for f, v in zip(spec["features"], values):
            row.extend(feature_values(f, v))
        rows.append(row)
        labels.append(int(y == positive) if positive is not None else int(y))
    return np.array(rows), np.array(labels)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="contracts/models/fraud_lr.yaml")
    p.add_argument("curated")
    p.add_argument("holdout")
    p.add_argument("report")
    a = p.parse_args()
    spec = yaml.safe_load(open(a.spec))
    params = spec.get("params", {})
    c = float(params.get("C", 1.0))
    weight = (params.get("classWeight") or {}).get("positive", 1)
    x, y = features(a.curated, spec)
    hx, hy = features(a.holdout, spec)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-12] = 1.0
    started = time.perf_counter()
    model = LogisticRegression(C=c, class_weight={0: 1, 1: weight}, max_iter=5000).fit((x - mean) / std, y)
    fit_s = time.perf_counter() - started
    sk = roc_auc_score(hy, model.predict_proba((hx - mean) / std)[:, 1])
    ours = json.load(open(a.report))["auc"]
    print(f"{spec['name']}: {len(y)} rows fitted, {len(hy)} holdout rows ({int(hy.sum())} positives), {x.shape[1]} features")
    print(f"holdout AUC: mlsec {ours:.4f}  scikit-learn {sk:.4f}  difference {ours - sk:+.4f}")
    print(f"scikit-learn fit: {fit_s * 1000:.0f} ms")


if __name__ == "__main__":
    main()
