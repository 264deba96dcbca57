#!/usr/bin/env python3
"""AUC parity: the pipeline's model against scikit-learn's LogisticRegression on the same split.

Reads what a run of the pipeline stored: the curated training rows (what train fitted on), the holdout
curate routed away (what govern judged on) and govern's gate report. Fits scikit-learn's
LogisticRegression (standardised features, default C=1.0, as the spec's `C: 1.0`) on the curated rows with
the features of contracts/models/fraud_lr.yaml computed the same way (log1p amount, night, one-hot
channel, country != BR), scores the holdout and prints both AUCs and the fit times.

    python scripts/auc-parity.py CURATED.parquet HOLDOUT.parquet GATE-REPORT.json

Needs pyarrow, numpy and scikit-learn (not part of the test suite).
"""
import json
import sys
import time

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

CHANNELS = ["online", "pos", "atm", "branch"]


def features(path):
    t = pq.read_table(path).to_pydict()
    rows, labels = [], []
    for amount, ts, channel, country, y in zip(t["amount"], t["tx_time"], t["channel"], t["country"], t["is_fraud"]):
        if None in (amount, ts, channel, country, y):
            continue
        hour = ts.hour
        rows.append([np.log1p(max(amount, 0.0)), float(not 6 <= hour < 22)]
                    + [float(channel == c) for c in CHANNELS] + [float(country != "BR")])
        labels.append(int(y))
    return np.array(rows), np.array(labels)


def main(curated, holdout, report_path):
    x, y = features(curated)
    hx, hy = features(holdout)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-12] = 1.0
    started = time.perf_counter()
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / std, y)
    fit_s = time.perf_counter() - started
    sk = roc_auc_score(hy, model.predict_proba((hx - mean) / std)[:, 1])
    report = json.load(open(report_path))
    ours = report["auc"]
    print(f"rows: {len(y)} fitted, {len(hy)} holdout ({int(hy.sum())} positives)")
    print(f"holdout AUC: mlsec {ours:.4f}  scikit-learn {sk:.4f}  difference {ours - sk:+.4f}")
    print(f"scikit-learn fit: {fit_s * 1000:.0f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:4])
