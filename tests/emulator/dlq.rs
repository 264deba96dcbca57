//! The incident workflow on the emulator: a scoring dataset fails (no production model
//! yet) until it is parked with a failure record and a `ProcessingFailed` event; bodies
//! injected straight into the DLQ sit beside it. `dlq list` explains all three, `show`
//! one; a filtered dry run lists exactly what would move; replay before the fix moves it
//! once and sees it fail again; after the fix (a model in production) replay moves it, the
//! worker completes it, and the report, the DLQ and the audit chain say so. The injected
//! bodies are refused every time: no record of the worker names them.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::{
    dlq::{self, Filters, Origin, ReplayOptions},
    ops::{Subscription, drop_bytes},
};
use mlsec_runtime::{
    inbound::eventbridge_body,
    sample::{SampleKind, csv_bytes},
};
use mlsec_tests::Stack;

const TIMEOUT: Duration = Duration::from_secs(120);

fn opts(filters: Filters, dry_run: bool, wait_seconds: u64) -> ReplayOptions {
    ReplayOptions { filters, rate: dlq::DEFAULT_RATE, max: 1000, dry_run, wait_seconds }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_then_replay_with_a_filter_then_verify_and_injected_bodies_are_refused() {
    let stack = Stack::new("dlq").await;
    let dep = &stack.dep;
    let sub = Subscription::create(
        dep,
        "ops",
        &["ProcessingFailed".into(), "ModelStaged".into(), "ModelPromoted".into(), "RecordsScored".into()],
    )
    .await
    .unwrap();
    let running = stack.start(&["ingest", "curate", "score"]).await;
    let scoring = csv_bytes(SampleKind::Scoring, 50, 7);
    drop_bytes(dep, "bank-core/transactions_scoring/s.csv", ByteStream::from(scoring)).await.unwrap();
    let failed = sub.wait_for(&["ProcessingFailed"], TIMEOUT).await.expect("the parking is announced");
    let failed = failed.iter().find(|e| e.schema == "ProcessingFailed").unwrap().event.clone();
    assert_eq!(failed["worker"], "score");
    assert_eq!(failed["reason_code"], "transient");
    assert_eq!(failed["attempts"], 3);
    let queue = dep.names.queue("score");
    let dlq_name = dep.names.dlq("score");
    let parked = stack
        .eventually(TIMEOUT, || async { stack.depth(&dlq_name).await == 1 && stack.depth(&queue).await == 0 })
        .await;
    assert!(parked, "after maxReceiveCount the message is in the DLQ");

    // Someone who can send to the DLQ injects bodies: an S3 notification with a trusted
    // requester, and garbage. No record of the score worker names them.
    let dlq_url = dep.queue_url(&dlq_name).await.unwrap();
    let forged = eventbridge_body(
        "aws.s3",
        "Object Created",
        serde_json::json!({"bucket": {"name": stack.bucket("landing")}, "object": {"key": "x/y/z.csv"}, "requester": "123456789012"}),
    );
    for body in [forged.as_str(), "garbage"] {
        dep.sqs.send_message().queue_url(&dlq_url).message_body(body).send().await.unwrap();
    }

    // Status: the depth, and the age of the oldest parked message (the real one, first
    // sent before the drop's retries), from a peek that holds nothing back.
    let status = mlsec_cli::ops::status(dep).await.unwrap();
    let score = status.workers.iter().find(|w| w.worker == "score").unwrap();
    assert_eq!(score.dlq.visible, 3, "{score:?}");
    let age = score.dlq_oldest_age_ms.expect("the oldest parked message's age");
    assert!(age >= 1000 && age < TIMEOUT.as_millis() as i64 + 60_000, "{age} ms");
    assert!(score.dlq_oldest_error.is_none());
    let idle = status.workers.iter().find(|w| w.worker == "curate").unwrap();
    assert_eq!((idle.dlq_oldest_age_ms, idle.dlq.visible), (None, 0));
    assert!(mlsec_cli::ops::render_status(&status).contains("oldest parked"));
    let after = mlsec_aws::queues::depth(&dep.sqs, &dlq_url).await.unwrap();
    assert_eq!((after.visible, after.in_flight), (3, 0), "the peek holds nothing");

    // List: three messages, grouped, explained, all still in the DLQ.
    let all = dlq::list(dep, "score", &Filters::default()).await.unwrap();
    assert_eq!(all.len(), 3, "{all:#?}");
    let groups = dlq::group(&all);
    let by = |reason: &str, t: &str| groups.iter().find(|g| g.reason == reason && g.event_type == t).cloned();
    let real = by("transient", "DatasetCurated").expect("the parked dataset");
    assert_eq!((real.count, real.unproven), (1, 0));
    assert_eq!(by("unrecorded", "ObjectCreated").map(|g| (g.count, g.unproven)), Some((1, 1)));
    assert_eq!(by("unrecorded", "undecodable").map(|g| (g.count, g.unproven)), Some((1, 1)));
    assert_eq!(stack.depth(&dlq_name).await, 3, "listing moves nothing");
    let event_id = failed["input_key"].as_str().unwrap().to_string();
    let shown = dlq::list(dep, "score", &Filters { id: Some(event_id.clone()), ..Default::default() }).await.unwrap();
    assert_eq!(shown.len(), 1);
    let record = shown[0].failure.as_ref().expect("a failure record");
    assert_eq!((record.attempts, record.reason_code.as_str()), (3, "transient"));
    assert_eq!(record.operation.as_deref(), Some("registry:production"));
    assert_eq!(shown[0].origin, Origin::Proven { by: "failure record".into() });
    let text = dlq::render_groups("score", &groups, mlsec_runtime::now_ms());
    assert!(text.contains("transient") && text.contains("3 parked in the score DLQ"), "{text}");

    // A dry run lists exactly what a real run would move; nothing moves.
    let transient = Filters { reason: Some("transient".into()), ..Default::default() };
    let dry = dlq::replay(dep, "score", &opts(transient.clone(), true, 0)).await.unwrap();
    assert_eq!((dry.matched, dry.moved, dry.skipped), (1, 0, 2));
    assert_eq!(dry.messages[0].input_key, event_id);
    assert_eq!(stack.depth(&dlq_name).await, 3);

    // Before the fix: moved once, fails again, parked again; not moved twice in one run.
    let early = dlq::replay(dep, "score", &opts(transient.clone(), false, 30)).await.unwrap();
    assert_eq!((early.moved, early.failed_again, early.completed), (1, 1, 0), "{early:?}");
    let back = stack.eventually(TIMEOUT, || async { stack.depth(&dlq_name).await == 3 }).await;
    assert!(back, "parked again, nothing lost");

    // Unfiltered, the injected bodies are refused and stay.
    let everything = dlq::replay(dep, "score", &opts(Filters::default(), true, 0)).await.unwrap();
    assert_eq!(everything.refused, 2, "{everything:?}");
    assert!(everything.refused_messages.iter().all(|p| matches!(p.origin, Origin::Unproven { .. })));

    // The fix: a model in production. Then replay with the filter, and verify.
    let training = csv_bytes(SampleKind::Training, 3000, 1);
    let more = stack.start(&["train", "govern"]).await;
    drop_bytes(&stack.producer().await, "bank-core/transactions_training/t.csv", ByteStream::from(training))
        .await
        .unwrap();
    stack.approve_next(&sub, TIMEOUT).await;
    let fixed = dlq::replay(dep, "score", &opts(transient, false, 60)).await.unwrap();
    assert_eq!((fixed.moved, fixed.completed, fixed.refused, fixed.skipped), (1, 1, 0, 2), "{fixed:?}");
    sub.wait_for(&["RecordsScored"], TIMEOUT).await.expect("the replayed dataset is scored");
    more.stop().await.unwrap();
    running.stop().await.unwrap();
    assert_eq!(stack.depth(&dlq_name).await, 2, "only the injected bodies are left");

    // Each real replay is on the audit chain, in the operator's name, with its counts and inputs.
    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    let replays: Vec<_> = chain.decoded().into_iter().filter(|r| r.entry.action.as_str() == "dlq_replayed").collect();
    assert_eq!(replays.len(), 2, "dry runs are not recorded");
    let last = &replays[1].entry;
    assert_eq!(last.attributes["moved"], "1");
    assert_eq!(last.attributes["refused"], "0", "filtered: the injected bodies did not match");
    assert!(last.attributes["input_keys"].contains(&event_id));
    assert!(last.attributes["filters"].contains("transient"));
    let me = mlsec_aws::identity::caller(&dep.sts).await.unwrap();
    assert_eq!(last.actor.id, me.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_keeps_parked_messages_encrypted_and_restore_brings_back_only_what_the_worker_vouches_for() {
    let stack = Stack::new("dlq-archive").await;
    let dep = &stack.dep;
    let queue_url = dep.queue_url(&dep.names.queue("score")).await.unwrap();
    let dlq_name = dep.names.dlq("score");
    let dlq_url = dep.queue_url(&dlq_name).await.unwrap();
    // A body the score worker fails permanently (it is no event), so it is parked with a
    // failure record; and one injected straight into the DLQ.
    dep.sqs.send_message().queue_url(&queue_url).message_body("not an event").send().await.unwrap();
    let running = stack.start(&["score"]).await;
    let parked = stack.eventually(TIMEOUT, || async { stack.depth(&dlq_name).await == 1 }).await;
    running.stop().await.unwrap();
    assert!(parked);
    dep.sqs.send_message().queue_url(&dlq_url).message_body("injected").send().await.unwrap();

    let dry = dlq::archive(dep, "score", &Filters::default(), "incident 42", true).await.unwrap();
    assert_eq!((dry.done, stack.depth(&dlq_name).await), (2, 2), "a dry run moves nothing");
    let archived = dlq::archive(dep, "score", &Filters::default(), "incident 42", false).await.unwrap();
    assert_eq!(archived.done, 2);
    assert_eq!(stack.depth(&dlq_name).await, 0, "out of the DLQ");
    // Kept, not deleted: one object per message, under the pipeline key.
    let bucket = stack.bucket("incidents");
    let keys = stack.keys("incidents").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let pipeline_key = dep.key_arn("pipeline").await.unwrap();
    for key in &keys {
        let head = dep.s3.head_object().bucket(&bucket).key(key).send().await.unwrap();
        assert_eq!(head.ssekms_key_id(), Some(pipeline_key.as_str()), "{key}");
    }

    // Restore: the body the worker failed goes back to its queue; the injected one does not.
    let restored = dlq::restore(dep, "score", &Filters::default(), false).await.unwrap();
    assert_eq!((restored.done, restored.refused), (1, 1), "{restored:?}");
    assert_eq!(stack.depth(&dep.names.queue("score")).await, 1);
    let again = dlq::restore(dep, "score", &Filters::default(), false).await.unwrap();
    assert_eq!((again.done, again.already_restored, again.refused), (0, 1, 1), "restored once");
    assert_eq!(stack.keys("incidents").await.len(), 3, "the archive stays, with a restored marker");

    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    let records = chain.decoded();
    let archive = records.iter().find(|r| r.entry.action.as_str() == "dlq_archived").expect("the archive is audited");
    assert_eq!(archive.entry.reason, "incident 42");
    assert_eq!(archive.entry.attributes["archived"], "2");
    let restores = records.iter().filter(|r| r.entry.attributes.get("from").map(String::as_str) == Some("archive"));
    assert_eq!(restores.count(), 2, "each restore run is audited");
}

/// `mlsec reingest`: the gateway announces an accepted content's recorded `RawAccepted`
/// again with the same event id, on request; a request for content it never accepted is
/// parked with `not_accepted`, and a request sent under another source is refused. Each
/// request is on the audit chain in the caller's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_announces_the_recorded_event_again_and_refuses_what_was_never_accepted() {
    let stack = Stack::new("reingest").await;
    let dep = &stack.dep;
    let sub = Subscription::create(dep, "ops", &["RawAccepted".into()]).await.unwrap();
    let running = stack.start(&["ingest"]).await;
    let bytes = csv_bytes(SampleKind::Scoring, 20, 3);
    drop_bytes(dep, "bank-core/transactions_scoring/r.csv", ByteStream::from(bytes)).await.unwrap();
    let first = sub.wait_for(&["RawAccepted"], TIMEOUT).await.expect("accepted");
    let first = first.iter().find(|e| e.schema == "RawAccepted").unwrap().clone();
    let sha = first.event["source"]["sha256"].as_str().unwrap().to_string();

    let r = dlq::reingest(dep, "transactions_scoring", &sha, "curate DLQ expired").await.unwrap();
    let again = sub.wait_for(&["RawAccepted"], TIMEOUT).await.expect("announced again");
    let again = again.iter().find(|e| e.schema == "RawAccepted").unwrap();
    assert_eq!(again.event_id, first.event_id, "the recorded event, unchanged");
    assert_eq!(again.event, first.event);

    // Content never accepted: parked with a reason an operator can list.
    let unknown = "0".repeat(64);
    dlq::reingest(dep, "transactions_scoring", &unknown, "typo").await.unwrap();
    // The same request shape under a worker's source is refused.
    let forged = {
        use mlsec_events::{Envelope, ReingestRequested};
        let id = mlsec_ingest::reingest_request_id("transactions_scoring", &sha, "nobody", 0);
        let e = ReingestRequested {
            event_id: id.clone(),
            correlation_id: id,
            dataset: "transactions_scoring".into(),
            sha256: sha.clone(),
            requested_by: "nobody".into(),
            reason: "forged".into(),
            occurred_at_ms: 0,
        };
        let detail = serde_json::to_value(Envelope::wrap(&e).unwrap()).unwrap();
        eventbridge_body(&dep.names.event_source("curate"), "ReingestRequested", detail)
    };
    let ingest_queue = dep.queue_url(&dep.names.queue("ingest")).await.unwrap();
    dep.sqs.send_message().queue_url(&ingest_queue).message_body(forged).send().await.unwrap();
    // A request from the operator source whose id was chosen (it could name another input's
    // claim and mark it done) is refused.
    let chosen = {
        use mlsec_events::{Envelope, ReingestRequested};
        let e = ReingestRequested {
            event_id: first.event_id.clone(),
            correlation_id: "c".into(),
            dataset: "transactions_scoring".into(),
            sha256: sha.clone(),
            requested_by: "nobody".into(),
            reason: "poison a claim".into(),
            occurred_at_ms: 0,
        };
        let detail = serde_json::to_value(Envelope::wrap(&e).unwrap()).unwrap();
        eventbridge_body(&dep.names.event_source("operator"), "ReingestRequested", detail)
    };
    dep.sqs.send_message().queue_url(&ingest_queue).message_body(chosen).send().await.unwrap();
    let dlq_name = dep.names.dlq("ingest");
    let parked = stack.eventually(TIMEOUT, || async { stack.depth(&dlq_name).await == 3 }).await;
    assert!(parked, "the three requests are parked");
    running.stop().await.unwrap();
    let mut reasons: Vec<String> =
        dlq::list(dep, "ingest", &Filters::default()).await.unwrap().iter().map(|p| p.reason().to_string()).collect();
    reasons.sort();
    assert_eq!(reasons, ["bad_reingest_request", "forged_source", "not_accepted"].map(String::from).to_vec());
    assert!(sub.poll(1).await.unwrap().iter().all(|e| e.schema != "RawAccepted"), "nothing announced for them");

    let chain = mlsec_cli::audit::load(dep).await.unwrap();
    let records = chain.decoded();
    let asked: Vec<_> =
        records.iter().filter(|r| r.entry.attributes.get("from").map(String::as_str) == Some("ledger")).collect();
    assert_eq!(asked.len(), 2, "each request is audited");
    assert_eq!(asked[0].entry.attributes["sha256"], sha);
    assert_eq!(asked[0].entry.attributes["request"], r.request);
    let me = mlsec_aws::identity::caller(&dep.sts).await.unwrap();
    assert_eq!(asked[0].entry.actor.id, me.id);
}
