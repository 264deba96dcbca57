"""Static checks of terraform/ (no Terraform binary or provider can be downloaded here).

- every .tf file parses (python-hcl2);
- the example root builds everything from terraform/topology.json, and the worker module
  gives every worker its queue, DLQ, rule, target, role policy, function, event-source
  mapping (ReportBatchItemFailures) and alarms;
- the worker policy never grants "*" actions or resources, and every resource it names
  derives from the worker's own declaration (reads, writes, keys, tables) or its own
  queue, log group and the pipeline bus.
checkov runs separately (scripts/check-terraform.sh).
"""

import ast
import json
import pathlib
import re

import hcl2
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "terraform"
TOPOLOGY = json.loads((ROOT / "topology.json").read_text())


def load(path):
    with open(path) as fh:
        return hcl2.load(fh)


def blocks(doc, kind, type_=None):
    """{name: body} of the resource/data blocks of one type in a parsed file."""
    out = {}
    for entry in doc.get(kind, []):
        for t, named in entry.items():
            if type_ is None or t == type_:
                for name, body in named.items():
                    out[name] = body
    return out


def module_resources(module):
    res = {}
    for f in (ROOT / "modules" / module).glob("*.tf"):
        for entry in load(f).get("resource", []):
            for t, named in entry.items():
                res.setdefault(t, set()).update(named.keys())
    return res


def val(v):
    """python-hcl2 wraps attribute values in a one-element list; unwrap it."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def strip(v):
    v = val(v)
    return v.strip('"') if isinstance(v, str) else v


def test_every_tf_file_parses():
    files = sorted(ROOT.rglob("*.tf"))
    assert len(files) >= 20
    for f in files:
        load(f)


def test_every_module_has_the_standard_files_and_described_variables_and_outputs():
    for module in sorted(p for p in (ROOT / "modules").iterdir() if p.is_dir()):
        names = {p.name for p in module.glob("*.tf")}
        assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names, module
        for var in load(module / "variables.tf").get("variable", []):
            for name, body in var.items():
                assert body.get("description"), f"{module.name}: variable {name} has no description"
                assert body.get("type") and "any" not in str(body["type"]), f"{module.name}: variable {name} must be typed"
        for out in load(module / "outputs.tf").get("output", []):
            for name, body in out.items():
                assert body.get("description"), f"{module.name}: output {name} has no description"


def test_the_example_root_builds_everything_from_the_topology_file():
    main = (ROOT / "envs" / "dev" / "main.tf").read_text()
    m = re.search(r'topology\s*=\s*jsondecode\(file\("\$\{path\.module\}/([^"]+)"\)\)', main)
    assert m, "envs/dev must read the topology with jsondecode(file(...))"
    assert (ROOT / "envs" / "dev" / m.group(1)).resolve() == (ROOT / "topology.json").resolve()
    doc = load(ROOT / "envs" / "dev" / "main.tf")
    modules = {}
    for entry in doc["module"]:
        modules.update(entry)
    assert strip(modules["worker"]["for_each"]) == "${local.workers}"
    assert "local.topology.workers" in main
    assert strip(modules["kms"]["keys"]) == "${local.topology.keys}"
    assert strip(modules["buckets"]["buckets"]) == "${local.topology.buckets}"
    assert strip(modules["tables"]["tables"]) == "${local.topology.tables}"
    assert strip(modules["events"]["pipeline_bus"]) == "${local.topology.pipeline_bus}"
    assert strip(modules["roles"]["workers"]) == "${toset(keys(local.workers))}"
    # Data events of every zone bucket are recorded (CloudTrail).
    assert strip(modules["audit"]["data_event_bucket_arns"]) == "${values(module.buckets.bucket_arns)}"


def test_every_worker_gets_queue_dlq_rule_role_function_mapping_and_alarms():
    res = module_resources("worker")
    assert res["aws_sqs_queue"] == {"queue", "dlq"}
    assert res["aws_cloudwatch_event_rule"] == {"trigger"}
    assert res["aws_cloudwatch_event_target"] == {"queue"}
    assert res["aws_sqs_queue_policy"] == {"queue", "dlq"}
    assert res["aws_sqs_queue_redrive_allow_policy"] == {"dlq"}
    assert res["aws_iam_role_policy"] == {"worker"}
    assert res["aws_lambda_function"] == {"worker"}
    assert res["aws_lambda_event_source_mapping"] == {"queue"}
    assert res["aws_cloudwatch_metric_alarm"] == {"dlq_depth", "errors"}
    assert res["aws_cloudwatch_log_group"] == {"worker"}
    assert module_resources("roles")["aws_iam_role"] == {"worker"}
    main = load(ROOT / "modules" / "worker" / "main.tf")
    esm = blocks(main, "resource", "aws_lambda_event_source_mapping")["queue"]
    assert val(esm["function_response_types"]) == "ReportBatchItemFailures"
    queue = blocks(main, "resource", "aws_sqs_queue")["queue"]
    assert "local.visibility_seconds" in str(queue["visibility_timeout_seconds"])
    assert "var.worker.queue.max_receive_count" in str(queue["redrive_policy"])
    # Every worker of the declaration satisfies the module's typed input.
    for name, decl in TOPOLOGY["workers"].items():
        assert decl["trigger"]["bus"] in ("default", "pipeline"), name
        assert set(decl) >= {"zone", "trigger", "reads", "writes", "keys", "tables", "emits", "queue"}, name
        # Record reads are narrow key patterns, never a whole bucket.
        for bucket, patterns in decl.get("reads_records", {}).items():
            assert bucket in TOPOLOGY["buckets"], (name, bucket)
            assert all(p not in ("*", "/*", "") for p in patterns), (name, bucket, patterns)


# ---- Crash recovery and throttling ----

# What "a crashed worker's message returns within about two minutes" allows.
MAX_IN_FLIGHT_WINDOW_SECONDS = 120


def recovery_problems(main_tf, variables_tf, topology):
    """Why a crash, a throttle or a long job could park a message or hold it for long."""
    problems = []
    main = load(main_tf)
    text = main_tf.read_text()
    esm = blocks(main, "resource", "aws_lambda_event_source_mapping")["queue"]
    scaling = val(esm.get("scaling_config")) or {}
    if "var.reserved_concurrency" not in str(scaling.get("maximum_concurrency")):
        problems.append("the mapping's maximum concurrency is not the reserved concurrency: throttled batches count receives")
    reserved = next(v["reserved_concurrency"] for v in load(variables_tf)["variable"] if "reserved_concurrency" in v)
    if ">= 2" not in json.dumps(val(reserved.get("validation"))):
        problems.append("reserved concurrency may be below the mapping's minimum maximum concurrency (2)")
    if not re.search(r"visibility_seconds\s*=\s*max\(var\.worker\.queue\.visibility_timeout_seconds, local\.timeout_seconds\)", text):
        problems.append("the queue's visibility is not at least the function timeout (Lambda refuses the mapping)")
    fn = blocks(main, "resource", "aws_lambda_function")["worker"]
    if "MLSEC_VISIBILITY_WINDOW_SECONDS" not in json.dumps(fn.get("environment")):
        problems.append("the Lambda driver is not told the in-flight window it renews")
    for name, decl in topology["workers"].items():
        window = decl["queue"]["visibility_timeout_seconds"]
        if window > MAX_IN_FLIGHT_WINDOW_SECONDS:
            problems.append(f"{name}: a crashed worker's message returns after {window} s")
        if decl["queue"]["max_receive_count"] < 3:
            problems.append(f"{name}: maxReceiveCount {decl['queue']['max_receive_count']} leaves no room for a crash and a retry")
        if not decl.get("lambda", {}).get("timeout_seconds"):
            problems.append(f"{name}: no function timeout of its own")
    return problems


def test_crashed_messages_return_within_two_minutes_and_throttling_never_parks_one():
    worker = ROOT / "modules" / "worker"
    assert recovery_problems(worker / "main.tf", worker / "variables.tf", TOPOLOGY) == []


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("main.tf", "maximum_concurrency = var.reserved_concurrency", "maximum_concurrency = 1000"),
        ("variables.tf", "var.reserved_concurrency >= 2", "var.reserved_concurrency >= 1"),
        ("main.tf", "visibility_seconds = max(var.worker.queue.visibility_timeout_seconds, local.timeout_seconds)", "visibility_seconds = var.worker.queue.visibility_timeout_seconds"),
        ("main.tf", "MLSEC_VISIBILITY_WINDOW_SECONDS =", "MLSEC_WINDOW ="),
    ],
)
def test_the_recovery_check_fails_if_the_module_regresses(tmp_path, file, old, new):
    worker = ROOT / "modules" / "worker"
    for f in ("main.tf", "variables.tf"):
        text = (worker / f).read_text()
        if f == file:
            assert old in text, old
            text = text.replace(old, new, 1)
        (tmp_path / f).write_text(text)
    assert recovery_problems(tmp_path / "main.tf", tmp_path / "variables.tf", TOPOLOGY) != []


def test_the_recovery_check_fails_on_a_long_window_or_no_retries():
    for field, value in (("visibility_timeout_seconds", 1800), ("max_receive_count", 1)):
        widened = json.loads(json.dumps(TOPOLOGY))
        widened["workers"]["curate"]["queue"][field] = value
        worker = ROOT / "modules" / "worker"
        assert recovery_problems(worker / "main.tf", worker / "variables.tf", widened) != [], field


# ---- IAM: the worker policy ----

ALLOWED_RESOURCE_SOURCES = {
    "OwnQueue": ["aws_sqs_queue.queue.arn"],
    "ReadInputBuckets": ["var.worker.reads"],
    "ListInputBuckets": ["var.worker.reads"],
    "ReadOwnRecords": ["var.worker.reads_records"],
    "ListRecordBuckets": ["var.worker.reads_records"],
    "WriteOutputBuckets": ["var.worker.writes"],
    "HeadOwnOutputs": ["var.worker.writes"],
    "UseZoneKeys": ["local.full_keys"],
    "DecryptReadZones": ["local.read_keys"],
    "DerivePseudonymSubkeys": ["local.key_names"],
    "SigningKey": ["local.key_names"],
    "OwnClaims": ['var.table_arns[\\"idempotency\\"]'],
    "WriteTables": ["local.write_tables"],
    "ReadTables": ["local.read_tables"],
    "AppendAudit": ['var.bucket_arns[\\"audit\\"]}/records/${var.name}/*'],
    "ReadOwnAuditRecords": ['var.bucket_arns[\\"audit\\"]}/records/${var.name}/*'],
    "ListOwnAuditRecords": ['var.bucket_arns[\\"audit\\"]'],
    "AuditHead": ['var.table_arns[\\"audit\\"]'],
    "AuditClaims": ['var.table_arns[\\"audit\\"]'],
    "AuditKeys": ['var.key_arns[\\"audit\\"]'],
    "SignAuditCheckpoints": ['var.key_arns[\\"audit_signing\\"]'],
    "PublishOnPipelineBus": ["var.bus_arn"],
    # IAM's ListRoles/ListUsers take no resource: "*" is the only form (read-only).
    "ResolvePeople": ['"*"'],
    "OwnLogs": ["aws_cloudwatch_log_group.worker.arn"],
}


def policy_statements(doc):
    body = blocks(doc, "data", "aws_iam_policy_document")["worker"]
    statements = list(body.get("statement", []))
    for dyn in body.get("dynamic", []):
        for _, d in dyn.items():
            content = d["content"]
            statements.extend(content if isinstance(content, list) else [content])
    return statements


def policy_violations(doc):
    problems = []
    for st in policy_statements(doc):
        sid = strip(st.get("sid"))
        actions = val(st.get("actions"))
        actions_text = json.dumps(actions)
        if re.search(r'"[a-z0-9]+:\*"|"\*"', actions_text) or re.search(r":[A-Za-z]*\*", actions_text):
            problems.append(f"{sid}: wildcard action {actions_text}")
        resources = json.dumps(val(st.get("resources")))
        list_only = sid == "ResolvePeople" and set(actions if isinstance(actions, list) else [actions]) <= {"iam:ListRoles", "iam:ListUsers"}
        if (re.search(r'"\*"', resources) and not list_only) or "arn:aws" in resources:
            problems.append(f"{sid}: literal or wildcard resource {resources}")
        allowed = ALLOWED_RESOURCE_SOURCES.get(sid)
        if allowed is None:
            problems.append(f"{sid}: statement not in the reviewed list")
        elif not any(src in resources for src in allowed):
            problems.append(f"{sid}: resources {resources} do not derive from {allowed}")
        if sid in ("ReadInputBuckets", "ListInputBuckets") and "var.worker.writes" in resources:
            problems.append(f"{sid}: reads must not cover output buckets")
        if sid == "WriteOutputBuckets" and "var.worker.reads" in resources:
            problems.append(f"{sid}: writes must not cover input buckets")
        if sid == "HeadOwnOutputs" and (
            (actions if isinstance(actions, list) else [actions]) != ["s3:GetObject"]
            or "var.worker.reads" in resources
            or "contains(['models', 'holdout'],b)" not in resources
        ):
            problems.append(f"{sid}: the retry's digest check reads the current version of own outputs only")
    return problems


def test_worker_policies_are_least_privilege():
    doc = load(ROOT / "modules" / "worker" / "main.tf")
    assert len(policy_statements(doc)) == len(ALLOWED_RESOURCE_SOURCES)
    assert policy_violations(doc) == []


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ('actions   = ["s3:PutObject"]', 'actions   = ["s3:*"]', "wildcard action"),
        (
            'resources = [for b in var.worker.writes : "${var.bucket_arns[b]}/*"]',
            'resources = ["*"]',
            "literal or wildcard resource",
        ),
        (
            'resources = [for b in var.worker.writes : "${var.bucket_arns[b]}/*"]',
            'resources = [for b in var.worker.reads : "${var.bucket_arns[b]}/*"]',
            "writes must not cover input buckets",
        ),
        (
            'if !contains(["models", "holdout"], b)]',
            ']',
            "own outputs only",
        ),
        (
            'actions   = ["s3:GetObject"] # HeadOwnOutputs',
            'actions   = ["s3:GetObject", "s3:GetObjectVersion"] # HeadOwnOutputs',
            "own outputs only",
        ),
        (
            'resources = [for t in local.write_tables : var.table_arns[t]]',
            'resources = [for t in keys(var.table_arns) : var.table_arns[t]]',
            "do not derive",
        ),
    ],
)
def test_the_policy_check_catches_a_widened_policy(tmp_path, old, new, expected):
    text = (ROOT / "modules" / "worker" / "main.tf").read_text()
    assert old in text
    widened = tmp_path / "main.tf"
    widened.write_text(text.replace(old, new, 1))
    problems = policy_violations(load(widened))
    assert any(expected in p for p in problems), problems


def test_each_worker_touches_only_its_zones():
    zones_of_bucket = {"landing": "z1", "raw": "z2", "quarantine": "z2", "curated": "z3", "holdout": "z3", "models": "z4", "scored": "z6"}
    allowed_writes = {"ingest": {"raw", "quarantine"}, "curate": {"curated", "holdout"}, "train": {"models"}, "govern": {"models"}, "score": {"scored"}}
    for name, decl in TOPOLOGY["workers"].items():
        assert set(decl["writes"]) == allowed_writes[name], f"{name} writes {decl['writes']}"
        for b in decl["reads"] + decl["writes"]:
            assert b in zones_of_bucket
        keys = {k.split(":")[0] for k in decl["keys"]}
        bucket_keys = {TOPOLOGY["buckets"][b]["key"] for b in decl["reads"] + decl["writes"]}
        assert bucket_keys <= keys, f"{name} lacks keys for its buckets"
        assert keys - bucket_keys <= {"pipeline", "pseudonym", "signing"}, f"{name} has keys beyond its zones: {keys - bucket_keys}"
    assert "signing:sign" in TOPOLOGY["workers"]["govern"]["keys"]
    assert "signing:verify" in TOPOLOGY["workers"]["score"]["keys"]


# ---- Lambda sizing against the contracts ----

# A conservative floor for the gateway's end-to-end rate on Lambda (S3 read, SHA-256,
# validation, Parquet, copy): a fifth of what it does through moto on 2 cores.
GATEWAY_FLOOR_BYTES_PER_SECOND = 8 * 1024 * 1024


def largest_landing_object():
    sizes = []
    for contract in (ROOT.parent / "contracts").glob("*.yaml"):
        m = re.search(r"property: maxObjectBytes\s+value: (\d+)", contract.read_text())
        assert m, f"{contract.name} has no maxObjectBytes"
        sizes.append(int(m.group(1)))
    return max(sizes)


def test_the_gateway_lambda_can_hold_and_finish_the_largest_object_a_contract_allows():
    main = load(ROOT / "modules" / "worker" / "main.tf")
    fn = blocks(main, "resource", "aws_lambda_function")["worker"]
    assert "var.worker.lambda.ephemeral_storage_mb" in json.dumps(fn.get("ephemeral_storage"))
    assert "var.worker.lambda.memory_mb" in str(fn["memory_size"])
    esm = blocks(main, "resource", "aws_lambda_event_source_mapping")["queue"]
    assert "var.worker.lambda.batch_size" in str(esm["batch_size"])
    ingest = TOPOLOGY["workers"]["ingest"]
    # One object per invocation: a batch's messages run concurrently and would share /tmp.
    assert ingest["lambda"].get("batch_size") == 1
    largest = largest_landing_object()
    # The Parquet spill in /tmp is smaller than the text it comes from.
    assert ingest["lambda"]["ephemeral_storage_mb"] * 1024 * 1024 >= largest
    timeout = min(900, ingest["lambda"]["timeout_seconds"])
    assert timeout * GATEWAY_FLOOR_BYTES_PER_SECOND >= largest, (timeout, largest)


# Curate spills the raw Parquet, the curated Parquet and the uniqueness runs to /tmp.
# Bytes per row measured with `mlsec bench --rows 1000000 --stages curate,train` (the
# "input MiB" of curate and train): raw 23.4 MiB, curated 69.6 MiB per million rows.
RAW_PARQUET_BYTES_PER_ROW = 24.5
CURATED_PARQUET_BYTES_PER_ROW = 73.0
# Each uniqueness rule spills 16 bytes per row at most (docs/zones/z3-curation.md).
KEY_BYTES_PER_ROW_PER_RULE = 16
# A conservative floor for curate on Lambda: a fifth of the bench's ~450,000 rows/s.
CURATE_FLOOR_ROWS_PER_SECOND = 80_000
# A conservative floor for S3 transfers from Lambda (download raw, upload curated).
S3_FLOOR_BYTES_PER_SECOND = 50 * 1000 * 1000
# Peak RSS of curate at 10M rows (`mlsec bench --rows 10000000 --stages curate`): 150 MiB.
CURATE_PEAK_RSS_MB = 150


def contract_limit(text, name):
    m = re.search(rf"property: {name}\s+value: (\d+)", text)
    assert m, f"a contract has no {name}"
    return int(m.group(1))


def test_the_curate_lambda_can_spill_and_finish_the_largest_dataset_a_contract_allows():
    curate = TOPOLOGY["workers"]["curate"]
    assert curate.get("lambda"), "curate needs its own sizing: the 512 MB /tmp default holds about 4M rows"
    timeout = min(900, curate["lambda"]["timeout_seconds"])
    # One dataset per invocation: a batch's messages run concurrently and would share /tmp.
    assert curate["lambda"].get("batch_size") == 1
    for contract in (ROOT.parent / "contracts").glob("*.yaml"):
        text = contract.read_text()
        rows = contract_limit(text, "maxRows")
        unique_rules = text.count("metric: duplicateValues")
        assert unique_rules >= 1, contract.name
        per_row = RAW_PARQUET_BYTES_PER_ROW + CURATED_PARQUET_BYTES_PER_ROW + unique_rules * KEY_BYTES_PER_ROW_PER_RULE
        needed = rows * per_row * 1.25
        assert curate["lambda"]["ephemeral_storage_mb"] * 1024 * 1024 >= needed, (contract.name, needed)
        transfer = rows * (RAW_PARQUET_BYTES_PER_ROW + CURATED_PARQUET_BYTES_PER_ROW) / S3_FLOOR_BYTES_PER_SECOND
        work = rows / CURATE_FLOOR_ROWS_PER_SECOND + transfer
        assert timeout >= work * 1.25, (contract.name, timeout, work)
    # Memory is flat in the row count; the Lambda's share of CPU grows with its memory.
    assert curate["lambda"]["memory_mb"] >= 8 * CURATE_PEAK_RSS_MB


# ---- Z9: the audit chain ----


def statement(doc, sid):
    return next(st for st in policy_statements(doc) if strip(st.get("sid")) == sid)


def test_a_worker_appends_audit_records_only_under_its_own_prefix_and_its_own_items():
    doc = load(ROOT / "modules" / "worker" / "main.tf")
    append = statement(doc, "AppendAudit")
    assert val(append["actions"]) == "s3:PutObject" or val(append["actions"]) == ["s3:PutObject"]
    resources = json.dumps(val(append["resources"]))
    assert "/records/${var.name}/*" in resources and "/checkpoints/*" in resources
    assert '/*"' not in resources.replace("/records/${var.name}/*", "").replace("/checkpoints/*", ""), resources
    head = statement(doc, "AuditHead")
    actions = json.dumps(val(head["actions"]))
    assert "PutItem" not in actions and "DeleteItem" not in actions and "dynamodb:*" not in actions, actions
    assert '["head"]' in json.dumps(val(head["condition"]))
    claims = statement(doc, "AuditClaims")
    assert "UpdateItem" not in json.dumps(val(claims["actions"])) and "DeleteItem" not in json.dumps(val(claims["actions"]))
    condition = json.dumps(val(claims["condition"]))
    assert "dynamodb:LeadingKeys" in condition and "decision#${var.name}#*" in condition, condition
    listing = json.dumps(val(statement(doc, "ListOwnAuditRecords")["condition"]))
    assert "s3:prefix" in listing and "records/${var.name}/*" in listing, listing
    assert val(statement(doc, "SignAuditCheckpoints")["actions"]) == ["kms:Sign", "kms:DescribeKey"]


def claim_violations(doc):
    """Why the idempotency table is not per worker, if it is not."""
    problems = []
    claims = statement(doc, "OwnClaims")
    actions = set(val(claims["actions"]))
    if not {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"} <= actions:
        problems.append(f"claims need put, update and delete: {actions}")
    condition = val(claims.get("condition")) or {}
    if strip(condition.get("test")) != "ForAllValues:StringLike" or strip(condition.get("variable")) != "dynamodb:LeadingKeys" or val(condition.get("values")) not in ("${var.name}#*", ["${var.name}#*"]):
        problems.append(f"claims are not keyed to the worker: {condition}")
    for st in policy_statements(doc):
        if strip(st.get("sid")) != "OwnClaims" and "idempotency" in json.dumps(val(st.get("resources"))):
            problems.append(f"{strip(st.get('sid'))} names the idempotency table")
    for name, decl in TOPOLOGY["workers"].items():
        if "idempotency" in [t.split(":")[0] for t in decl["tables"]]:
            problems.append(f"{name} gets the idempotency table unconditioned (topology tables)")
    return problems


def test_a_worker_claims_only_its_own_inputs():
    assert claim_violations(load(ROOT / "modules" / "worker" / "main.tf")) == []


@pytest.mark.parametrize(
    "old, new",
    [
        ('values   = ["${var.name}#*"]', 'values   = ["*"]'),
        ('test     = "ForAllValues:StringLike"\n      variable = "dynamodb:LeadingKeys"\n      values   = ["${var.name}#*"]', 'test     = "StringLike"\n      variable = "aws:userid"\n      values   = ["*"]'),
    ],
)
def test_the_claim_check_fails_if_a_worker_may_write_anothers_claims(tmp_path, old, new):
    text = (ROOT / "modules" / "worker" / "main.tf").read_text()
    assert old in text
    widened = tmp_path / "main.tf"
    widened.write_text(text.replace(old, new, 1))
    assert claim_violations(load(widened)) != []


def test_the_claim_check_fails_if_the_topology_grants_the_table(monkeypatch):
    widened = json.loads(json.dumps(TOPOLOGY))
    widened["workers"]["ingest"]["tables"] = ["idempotency"]
    monkeypatch.setitem(TOPOLOGY, "workers", widened["workers"])
    assert claim_violations(load(ROOT / "modules" / "worker" / "main.tf")) != []


def test_done_records_outlive_the_queues_and_the_bus_archive():
    rust = (ROOT.parent / "workers" / "aws" / "src" / "dynamo.rs").read_text()
    m = re.search(r"IDEMPOTENCY_TTL_SECONDS: i64 = (\d+) \* 24 \* 3600;", rust)
    assert m, "IDEMPOTENCY_TTL_SECONDS is not in days"
    ttl_days = int(m.group(1))
    archive = load(ROOT / "modules" / "events" / "variables.tf")
    archive_days = next(val(v["archive_retention_days"]["default"]) for v in archive["variable"] if "archive_retention_days" in v)
    dlq = blocks(load(ROOT / "modules" / "worker" / "main.tf"), "resource", "aws_sqs_queue")["dlq"]
    sqs_days = val(dlq["message_retention_seconds"]) / 86400
    # A replay of the archive (or of a DLQ) finds every effect it would redo marked done.
    assert ttl_days > archive_days, (ttl_days, archive_days)
    assert ttl_days > sqs_days, (ttl_days, sqs_days)
    dev = load(ROOT / "envs" / "dev" / "main.tf")
    events = next(m["events"] for m in dev["module"] if "events" in m)
    assert "archive_retention_days" not in events, "the root must not lengthen the archive past the records"


def all_policy_actions():
    text = ""
    for f in ROOT.rglob("*.tf"):
        text += f.read_text()
    return text


def test_no_role_may_delete_audit_records_and_the_bucket_is_worm():
    assert TOPOLOGY["buckets"]["audit"]["object_lock"] is True
    assert TOPOLOGY["keys"]["audit_signing"]["spec"] == "ECC_NIST_P256"
    # No policy document anywhere allows deleting objects or object versions.
    for f in ROOT.rglob("*.tf"):
        for entry in load(f).get("data", []):
            for t, named in entry.items():
                if t != "aws_iam_policy_document":
                    continue
                for name, body in named.items():
                    statements = list(body.get("statement", []))
                    for dyn in body.get("dynamic", []):
                        for _, d in dyn.items():
                            content = d["content"]
                            statements.extend(content if isinstance(content, list) else [content])
                    for st in statements:
                        effect = strip(st.get("effect")) or "Allow"
                        actions = json.dumps(val(st.get("actions")))
                        if effect == "Allow":
                            assert "s3:DeleteObject" not in actions, (f.name, name, actions)
                            assert "BypassGovernanceRetention" not in actions, (f.name, name, actions)
    buckets = load(ROOT / "modules" / "buckets" / "main.tf")
    lock = blocks(buckets, "resource", "aws_s3_bucket_object_lock_configuration")["zone"]
    rule = json.dumps(val(lock["rule"]))
    assert "var.object_lock_mode" in rule and "var.object_lock_days" in rule, rule
    text = (ROOT / "modules" / "buckets" / "main.tf").read_text()
    assert "DenyDeletingOrUnlocking" in text and '"s3:DeleteObject", "s3:DeleteObjectVersion"' in text
    dev = (ROOT / "envs" / "dev" / "main.tf").read_text()
    assert "object_lock_mode    = var.audit_lock_mode" in dev and "object_lock_days    = var.audit_retention_days" in dev


def test_auditors_only_read_and_verify():
    dev = load(ROOT / "envs" / "dev" / "main.tf")
    auditor = blocks(dev, "data", "aws_iam_policy_document")["auditor"]
    actions = json.dumps([val(st.get("actions")) for st in auditor["statement"]])
    for forbidden in ["Put", "Delete", "Update", "Sign\"", "Encrypt", "GenerateDataKey"]:
        assert forbidden not in actions, (forbidden, actions)
    kms = (ROOT / "modules" / "kms" / "main.tf").read_text()
    readers = kms[kms.index("read_actions"):kms.index("}", kms.index("SIGN_VERIFY", kms.index("read_actions")))]
    assert "kms:Sign\"" not in readers and "kms:Encrypt" not in readers, readers


# ---- The model trust chain: each role's effective permissions, IAM and key policies ----
#
# No Terraform binary runs here, so the tests evaluate the policies themselves: each
# statement's resources are one of the reviewed expressions below, rendered for a worker's
# declaration exactly as the module's locals define them; the key policies are rendered
# from envs/dev's per-access-mode locals and the kms module's action lists. A statement
# with another expression fails the least-privilege test above, so the evaluation cannot
# silently miss a grant.


def worker_locals(decl):
    key_names = [k.split(":")[0] for k in decl["keys"]]
    access = {k.split(":")[0]: (k.split(":")[1] if ":" in k else "") for k in decl["keys"]}
    symmetric = [k for k in key_names if k not in ("pseudonym", "signing")]
    tables = {t.split(":")[0]: (t.split(":")[1] if ":" in t else "") for t in decl["tables"]}
    return {
        "key_names": key_names,
        "key_access": access,
        "full_keys": [k for k in symmetric if access[k] == ""],
        "read_keys": [k for k in symmetric if access[k] == "read"],
        "write_tables": [t for t, a in tables.items() if a == ""],
        "read_tables": [t for t, a in tables.items() if a == "read"],
    }


def actions_of(st, loc):
    a = val(st.get("actions"))
    if isinstance(a, str) and "local.key_access" in a:
        # local.key_access["signing"] == "sign" ? [sign...] : [verify...]
        m = re.match(r'\$\{local\.key_access\["signing"\] == "sign" \? (\[.*?\]) : (\[.*?\])\}$', a)
        assert m, a
        return ast.literal_eval(m.group(1) if loc["key_access"].get("signing") == "sign" else m.group(2))
    return a if isinstance(a, list) else [a]


def iam_grants(name, decl):
    """{(action, kind, name)} the worker module grants worker `name`, for the kinds the
    trust chain is about: keys, tables, the bus (with the event types it may put)."""
    loc = worker_locals(decl)
    doc = load(ROOT / "modules" / "worker" / "main.tf")
    out = set()
    for st in policy_statements(doc):
        sid = strip(st.get("sid"))
        res = json.dumps(val(st.get("resources")))
        acts = actions_of(st, loc)
        targets = []
        if "local.full_keys" in res:
            targets = [("key", k) for k in loc["full_keys"]]
        elif "local.read_keys" in res:
            targets = [("key", k) for k in loc["read_keys"]]
        elif sid in ("SigningKey", "DerivePseudonymSubkeys"):
            wanted = "signing" if sid == "SigningKey" else "pseudonym"
            targets = [("key", k) for k in loc["key_names"] if k == wanted]
        elif "local.write_tables" in res:
            targets = [("table", t) for t in loc["write_tables"]]
        elif "local.read_tables" in res:
            targets = [("table", t) for t in loc["read_tables"]]
        elif sid == "PublishOnPipelineBus" and decl["emits"]:
            cond = json.dumps(val(st.get("condition")))
            assert "events:detail-type" in cond and "var.worker.emits" in cond, cond
            assert "events:source" in cond and "${var.name_prefix}.${var.name}" in cond, cond
            targets = [("event", e) for e in decl["emits"]]
        elif "var.key_arns" in res or "var.table_arns" in res:
            continue  # the audit chain's own keys and items (tested above)
        for a in acts:
            for t in targets:
                out.add((a, *t))
    return out


def kms_locals():
    text = (ROOT / "modules" / "kms" / "main.tf").read_text()
    def actions(block, usage):
        body = text[text.index(block):]
        line = next(l for l in body.splitlines() if l.strip().startswith(usage))
        return json.loads(line.split("=", 1)[1])
    signers = text[text.index('sid       = "SignersOnly"'):]
    sign_actions = json.loads(signers.splitlines()[1].split("=", 1)[1])
    return actions, sign_actions


def key_policy_grants(role):
    """{(action, key)} the key policies give worker `role` (envs/dev's locals, rendered)."""
    actions, sign_actions = kms_locals()
    dev = (ROOT / "envs" / "dev" / "main.tf").read_text()
    assert 'if a == "read" || a == "verify"' in dev and 'r if a == "sign"' in dev and 'r if a == ""' in dev, "access-mode locals changed"
    out = set()
    for key, decl in TOPOLOGY["keys"].items():
        mode = None
        for k in TOPOLOGY["workers"][role]["keys"]:
            if k.split(":")[0] == key:
                mode = k.split(":")[1] if ":" in k else ""
        if mode is None:
            continue
        usage = decl["usage"]
        granted = {"": actions("usage_actions", usage), "read": actions("read_actions", usage),
                   "verify": actions("read_actions", usage), "sign": sign_actions}[mode]
        out |= {(a, key) for a in granted}
    return out


def test_only_govern_can_sign_models_and_score_can_only_verify():
    for name, decl in TOPOLOGY["workers"].items():
        iam = {a for a, kind, k in iam_grants(name, decl) if kind == "key" and k == "signing"}
        keyp = {a for a, k in key_policy_grants(name) if k == "signing"}
        if name == "govern":
            assert iam == keyp == {"kms:Sign", "kms:DescribeKey"}, (iam, keyp)
        elif name == "score":
            assert "kms:Sign" not in iam | keyp, (iam, keyp)
            assert iam == keyp == {"kms:Verify", "kms:GetPublicKey", "kms:DescribeKey"}, (iam, keyp)
        else:
            assert not iam and not keyp, (name, iam, keyp)


def test_the_signing_check_fails_if_score_may_sign(monkeypatch):
    widened = json.loads(json.dumps(TOPOLOGY))
    widened["workers"]["score"]["keys"] = [k.replace("signing:verify", "signing:sign") for k in widened["workers"]["score"]["keys"]]
    monkeypatch.setitem(TOPOLOGY, "workers", widened["workers"])
    with pytest.raises(AssertionError):
        test_only_govern_can_sign_models_and_score_can_only_verify()


def test_read_only_zones_are_decrypt_only_in_iam_and_key_policies():
    for name, decl in TOPOLOGY["workers"].items():
        loc = worker_locals(decl)
        grants = iam_grants(name, decl)
        keyp = key_policy_grants(name)
        for k in loc["read_keys"]:
            assert {a for a, kind, key in grants if kind == "key" and key == k} == {"kms:Decrypt", "kms:DescribeKey"}, (name, k)
            assert {a for a, key in keyp if key == k} == {"kms:Decrypt", "kms:DescribeKey"}, (name, k)
        # A worker that writes a bucket has full use of its key; one that only reads it, decrypt only.
        for b in decl["reads"]:
            key = TOPOLOGY["buckets"][b]["key"]
            if b not in decl["writes"] and b not in decl.get("reads_records", {}):
                assert key in loc["read_keys"], f"{name} only reads {b}: its key {key} must be :read"
    assert worker_locals(TOPOLOGY["workers"]["score"])["read_keys"] == ["curated", "models"]


def test_only_govern_writes_the_registry_score_reads_it_train_never_touches_it():
    writers, readers = set(), set()
    for name, decl in TOPOLOGY["workers"].items():
        for a, kind, t in iam_grants(name, decl):
            if kind == "table" and t == "registry":
                (writers if a in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem") else readers).add(name)
    assert writers == {"govern"}, writers
    assert readers == {"govern", "score"}, readers
    assert not any(t in ("registry", "decisions") for _, kind, t in iam_grants("train", TOPOLOGY["workers"]["train"]) if kind == "table")
    # The decisions table: govern reads, no worker writes (people do, under their own UserId).
    for name, decl in TOPOLOGY["workers"].items():
        for a, kind, t in iam_grants(name, decl):
            if kind == "table" and t == "decisions":
                assert name == "govern" and a in ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"), (name, a)
    dev = load(ROOT / "envs" / "dev" / "main.tf")
    ops = blocks(dev, "data", "aws_iam_policy_document")["operator_models"]
    own = next(st for st in ops["statement"] if strip(st.get("sid")) == "RecordOwnDecisions")
    assert val(own["actions"]) in ("dynamodb:PutItem", ["dynamodb:PutItem"])
    assert "dynamodb:LeadingKeys" in json.dumps(val(own["condition"])) and "aws:userid" in json.dumps(val(own["condition"]))
    for st in ops["statement"]:
        assert "registry" not in json.dumps(val(st["resources"])) or strip(st.get("sid")) == "ReadRegistryAndDecisions"


def test_the_registry_check_fails_if_train_may_write_it(monkeypatch):
    widened = json.loads(json.dumps(TOPOLOGY))
    widened["workers"]["train"]["tables"] = ["idempotency", "registry"]
    monkeypatch.setitem(TOPOLOGY, "workers", widened["workers"])
    with pytest.raises(AssertionError):
        test_only_govern_writes_the_registry_score_reads_it_train_never_touches_it()


def test_each_event_type_is_published_and_accepted_only_from_its_emitter():
    emitters = {}
    for name, decl in TOPOLOGY["workers"].items():
        for a, kind, e in iam_grants(name, decl):
            if kind == "event":
                emitters.setdefault(e, set()).add(name)
    assert emitters["ModelTrained"] == {"train"}
    assert "ingest" not in emitters["ModelTrained"] and emitters["RawAccepted"] == {"ingest"}
    assert emitters["ModelPromoted"] == {"govern"} and emitters["ModelStaged"] == {"govern"}
    assert "ModelReviewed" not in emitters and TOPOLOGY["operator_emits"] == ["ModelReviewed"]
    # Rules match exact sources built from the same declaration, never a prefix.
    worker = (ROOT / "modules" / "worker" / "main.tf").read_text()
    pattern = worker[worker.index("event_pattern"):worker.index("}\n\nresource")]
    assert "prefix" not in pattern and "source        = local.sources" in pattern, pattern
    dev = (ROOT / "envs" / "dev" / "main.tf").read_text()
    assert '"${var.name_prefix}.${w}" if contains(decl.emits, d)' in dev
    assert "event_sources   = local.event_sources" in dev


def test_the_event_check_fails_if_ingest_may_publish_model_trained(monkeypatch):
    widened = json.loads(json.dumps(TOPOLOGY))
    widened["workers"]["ingest"]["emits"] = widened["workers"]["ingest"]["emits"] + ["ModelTrained"]
    monkeypatch.setitem(TOPOLOGY, "workers", widened["workers"])
    with pytest.raises(AssertionError):
        test_each_event_type_is_published_and_accepted_only_from_its_emitter()


# ---- People: who dropped, who approved (ADR 0012) ----


def bucket_policy_statements(path=None):
    doc = load(path or ROOT / "modules" / "buckets" / "main.tf")
    body = blocks(doc, "data", "aws_iam_policy_document")["zone"]
    out = {}
    for dyn in body.get("dynamic", []):
        for _, d in dyn.items():
            content = d["content"]
            for st in content if isinstance(content, list) else [content]:
                out[strip(st.get("sid"))] = (strip(d.get("for_each")), st)
    for st in body.get("statement", []):
        out[strip(st.get("sid"))] = (None, st)
    return out


def test_a_drop_names_its_dropper_as_aws_says_and_the_tag_never_changes(path=None):
    drop_buckets = [b for b, d in TOPOLOGY["buckets"].items() if d.get("dropper_tag")]
    assert drop_buckets == ["landing"], drop_buckets
    statements = bucket_policy_statements(path)
    for_each, tagged = statements["DenyDropsTaggedWithAnotherDropper"]
    assert "each.value.dropper_tag" in for_each and strip(tagged["effect"]) == "Deny"
    assert set(val(tagged["actions"])) == {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"}
    conds = {(strip(c["test"]), strip(c["variable"])): val(c["values"]) for c in tagged["condition"]}
    assert conds[("StringNotEquals", "s3:RequestObjectTag/mlsec-dropped-by")] in ("$${aws:userid}", ["$${aws:userid}"]), conds
    assert conds[("Null", "s3:RequestObjectTag/mlsec-dropped-by")] in ("false", ["false"]), conds
    for_each, retag = statements["DenyRetaggingDrops"]
    assert "each.value.dropper_tag" in for_each and strip(retag["effect"]) == "Deny"
    assert set(val(retag["actions"])) == {"s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"}
    cond = val(retag["condition"])
    assert (strip(cond["test"]), strip(cond["variable"]), val(cond["values"])) in (
        ("Null", "s3:ExistingObjectTag/mlsec-dropped-by", "false"),
        ("Null", "s3:ExistingObjectTag/mlsec-dropped-by", ["false"]),
    ), cond
    # No body is readable without its zone key: other encryption is refused everywhere.
    _, sse = statements["DenyPutsWithOtherEncryption"]
    assert strip(sse["effect"]) == "Deny" and val(sse["actions"]) in ("s3:PutObject", ["s3:PutObject"])
    sse_conds = {(strip(c["test"]), strip(c["variable"])): val(c["values"]) for c in sse["condition"]}
    assert sse_conds == {
        ("Null", "s3:x-amz-server-side-encryption"): "false",
        ("StringNotEquals", "s3:x-amz-server-side-encryption"): "aws:kms",
    } or sse_conds == {
        ("Null", "s3:x-amz-server-side-encryption"): ["false"],
        ("StringNotEquals", "s3:x-amz-server-side-encryption"): ["aws:kms"],
    }, sse_conds
    # The code reads the same tag the policy pins.
    ports = (ROOT.parent / "workers" / "runtime" / "src" / "ports.rs").read_text()
    assert 'pub const DROPPED_BY_TAG: &str = "mlsec-dropped-by";' in ports
    # Ingest may read tags of what it reads; no worker may write them.
    worker = (ROOT / "modules" / "worker" / "main.tf").read_text()
    assert "s3:GetObjectVersionTagging" in worker and "s3:PutObjectTagging" not in worker


def test_the_dropper_check_fails_if_landing_loses_the_tag_rule(monkeypatch):
    widened = json.loads(json.dumps(TOPOLOGY))
    widened["buckets"]["landing"].pop("dropper_tag")
    monkeypatch.setitem(TOPOLOGY, "buckets", widened["buckets"])
    with pytest.raises(AssertionError):
        test_a_drop_names_its_dropper_as_aws_says_and_the_tag_never_changes()


@pytest.mark.parametrize("old, new", [
    ('values   = ["$${aws:userid}"]', 'values   = ["*"]'),
    ('variable = "s3:ExistingObjectTag/mlsec-dropped-by"', 'variable = "s3:ExistingObjectTag/other"'),
    ('"s3:PutObjectTagging", "s3:PutObjectVersionTagging"', '"s3:PutObjectVersionTagging"'),
])
def test_the_dropper_check_fails_if_the_bucket_policy_loosens(tmp_path, old, new):
    text = (ROOT / "modules" / "buckets" / "main.tf").read_text()
    assert old in text
    loosened = tmp_path / "main.tf"
    loosened.write_text(text.replace(old, new, 1))
    with pytest.raises((AssertionError, KeyError)):
        test_a_drop_names_its_dropper_as_aws_says_and_the_tag_never_changes(loosened)


def test_people_roles_pin_the_session_name_to_the_person_and_get_only_their_policies():
    dev = load(ROOT / "envs" / "dev" / "main.tf")
    docs = blocks(dev, "data", "aws_iam_policy_document")
    trust = val(docs["people_trust"]["statement"])
    assert set(val(trust["actions"])) == {"sts:AssumeRole", "sts:SetSourceIdentity"}
    cond = val(trust["condition"])
    assert (strip(cond["test"]), strip(cond["variable"])) == ("StringEquals", "sts:RoleSessionName"), cond
    assert val(cond["values"]) in ("$${aws:username}", ["$${aws:username}"]), cond
    roles = blocks(dev, "resource", "aws_iam_role")["people"]
    assert strip(roles["for_each"]) == "${local.topology.people}"
    assert "people_trust" in strip(roles["assume_role_policy"])
    assert set(TOPOLOGY["people"]) == {"producer", "model-risk", "incident-responder"}
    attached = val(blocks(dev, "resource", "aws_iam_role_policy_attachment")["people"]["for_each"])
    pairs = {(strip(v["role"]), strip(v["policy"])) for v in attached.values()}
    assert pairs == {
        ("producer", "${aws_iam_policy.producer.arn}"),
        ("model-risk", "${aws_iam_policy.operator_models.arn}"),
        ("model-risk", "${aws_iam_policy.operator_audit.arn}"),
        ("incident-responder", "${aws_iam_policy.operator_incidents.arn}"),
        ("incident-responder", "${aws_iam_policy.operator_audit.arn}"),
    }, pairs
    producer = json.dumps(docs["producer"])
    assert "dynamodb" not in producer and "events:" not in producer and "kms:Decrypt" not in producer
    # Govern (and the CLI's early check) resolve user ids through IAM, read-only.
    assert TOPOLOGY["workers"]["govern"].get("resolves_people") is True
    assert [w for w, d in TOPOLOGY["workers"].items() if d.get("resolves_people")] == ["govern"]
    resolve = statement(load(ROOT / "modules" / "worker" / "main.tf"), "ResolvePeople")
    assert set(val(resolve["actions"])) == {"iam:ListRoles", "iam:ListUsers"}


def dlq_problems(worker_tf, dev_tf):
    """Why something other than the worker's own queue could put a body in its DLQ, or an
    incident responder could do more than take, hand back and replay."""
    problems = []
    main = load(worker_tf)
    allow = blocks(main, "resource", "aws_sqs_queue_redrive_allow_policy").get("dlq")
    text = json.dumps(allow)
    if not allow or "byQueue" not in text or "aws_sqs_queue.queue.arn" not in text or "aws_sqs_queue.dlq.id" not in text:
        problems.append(f"the DLQ's redrive-allow policy does not name only the worker's queue: {allow}")
    policy = blocks(main, "data", "aws_iam_policy_document").get("dlq")
    st = val(policy["statement"]) if policy else {}
    if strip(st.get("effect")) != "Deny" or "sqs:SendMessage" not in json.dumps(val(st.get("actions"))) or '"*"' not in json.dumps(st.get("principals")):
        problems.append(f"the DLQ's queue policy does not deny every sender: {st}")
    if "aws_sqs_queue_policy" not in module_resources_of(worker_tf) or "dlq" not in module_resources_of(worker_tf)["aws_sqs_queue_policy"]:
        problems.append("the DLQ has no queue policy")
    dev = load(dev_tf)
    ops = {strip(s.get("sid")): s for s in blocks(dev, "data", "aws_iam_policy_document")["operator_incidents"]["statement"]}
    send = ops.get("ReplayIntoWorkerQueues", {})
    if "dlq" in json.dumps(val(send.get("resources"))):
        problems.append("responders may send to a DLQ")
    for sid, st in ops.items():
        acts = json.dumps(val(st.get("actions")))
        res = json.dumps(val(st.get("resources")))
        if re.search(r"dynamodb:(Put|Update|Delete|BatchWrite|TransactWrite)", acts):
            problems.append(f"{sid}: responders may write tables: {acts}")
        if "idempotency" in res and acts not in ('"dynamodb:GetItem"', '["dynamodb:GetItem"]'):
            problems.append(f"{sid}: responders may do more than read single claims and failure records: {acts}")
        if "*" in acts:
            problems.append(f"{sid}: wildcard action {acts}")
        if re.search(r"s3:Delete|sqs:SendMessage\b", acts) and sid != "ReplayIntoWorkerQueues":
            problems.append(f"{sid}: responders may delete archived messages or send elsewhere: {acts}")
    if "IncidentBucket" not in ops:
        problems.append("responders cannot archive parked messages (no IncidentBucket statement)")
    return problems


def test_incident_responders_are_named_in_the_key_policies_their_iam_policy_relies_on():
    # An IAM grant alone cannot use a key whose policy does not name the role: the DLQs and
    # tables are under the pipeline key, the audit records under the audit keys.
    text = (ROOT / "envs" / "dev" / "main.tf").read_text()
    for line in ("writers = concat(", "pipeline      = concat("):
        decl = next(l for l in text.splitlines() if l.strip().startswith(line.strip()))
        assert 'local.people["incident-responder"]' in decl, decl


def module_resources_of(tf):
    res = {}
    for entry in load(tf).get("resource", []):
        for t, named in entry.items():
            res.setdefault(t, set()).update(named.keys())
    return res


def test_only_the_workers_queue_fills_its_dlq_and_responders_only_take_and_replay():
    assert dlq_problems(ROOT / "modules" / "worker" / "main.tf", ROOT / "envs" / "dev" / "main.tf") == []


@pytest.mark.parametrize(
    "file, old, new",
    [
        ("worker", 'redrivePermission = "byQueue"', 'redrivePermission = "allowAll"'),
        ("worker", 'effect    = "Deny"', 'effect    = "Allow"'),
        ("dev", 'resources = [for w in module.worker : w.queue_arn]', 'resources = [for w in module.worker : w.dlq_arn]'),
        ("dev", 'actions   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket"]', 'actions   = ["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:DeleteObject"]'),
        ("dev", 'actions   = ["dynamodb:GetItem"]\n    resources = [module.tables.table_arns["idempotency"]]', 'actions   = ["dynamodb:GetItem", "dynamodb:PutItem"]\n    resources = [module.tables.table_arns["idempotency"]]'),
    ],
)
def test_the_dlq_check_fails_if_the_policies_loosen(tmp_path, file, old, new):
    paths = {"worker": ROOT / "modules" / "worker" / "main.tf", "dev": ROOT / "envs" / "dev" / "main.tf"}
    out = {}
    for k, p in paths.items():
        text = p.read_text()
        if k == file:
            assert old in text, old
            text = text.replace(old, new, 1)
        out[k] = tmp_path / f"{k}.tf"
        out[k].write_text(text)
    assert dlq_problems(out["worker"], out["dev"]) != []


def test_people_who_trace_lineage_see_metadata_of_the_data_zones_never_their_keys():
    dev = load(ROOT / "envs" / "dev" / "main.tf")
    ops = blocks(dev, "data", "aws_iam_policy_document")["operator_models"]
    text = json.dumps(ops)
    heads = next(st for st in ops["statement"] if strip(st.get("sid")) == "LineageHeads")
    assert set(val(heads["actions"])) == {"s3:GetObject", "s3:GetObjectVersion"}
    assert "landing" not in json.dumps(heads["resources"]), "lineage never reads the landing zone"
    for zone in ("landing", "raw", "curated", "holdout", "scored"):
        assert f'key_arns[\\"{zone}\\"]' not in text, f"operator_models grants the {zone} key"
    keys = [k for k in re.findall(r'key_arns\[\\+"(\w+)\\+"\]', text)]
    assert set(keys) == {"pipeline", "models"}, keys
