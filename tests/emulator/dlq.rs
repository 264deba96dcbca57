//! A message that always fails transiently ends in the DLQ after maxReceiveCount, and
//! `dlq replay` returns it to its queue without losing or duplicating it.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::ops::{self, drop_bytes};
use mlsec_runtime::sample::{SampleKind, csv_bytes};
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_ends_in_the_dlq_and_replay_returns_it() {
    let stack = Stack::new("dlq").await;
    let dep = &stack.dep;
    // No model was ever trained: scoring fails transiently ("no production version yet")
    // on every attempt.
    let running = stack.start(&["ingest", "curate", "score"]).await;
    drop_bytes(dep, "bank-core/transactions_scoring/s.csv", ByteStream::from(csv_bytes(SampleKind::Scoring, 50, 7)))
        .await
        .unwrap();
    let queue = dep.names.queue("score");
    let dlq = dep.names.dlq("score");
    let parked = stack
        .eventually(Duration::from_secs(60), || async {
            stack.depth(&dlq).await == 1 && stack.depth(&queue).await == 0
        })
        .await;
    running.stop().await.unwrap();
    assert!(parked, "after maxReceiveCount the message is in the DLQ");

    let listed = ops::dlq_list(dep, "score", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].detail_type.as_deref(), Some("DatasetCurated"));
    let before = stack.depth(&dlq).await + stack.depth(&queue).await;

    let dry = ops::dlq_replay(dep, "score", 100, true).await.unwrap();
    assert_eq!(dry.replayed, 1);
    assert_eq!(stack.depth(&dlq).await, 1, "a dry run moves nothing");

    let report = ops::dlq_replay(dep, "score", 100, false).await.unwrap();
    assert_eq!(report.replayed, 1);
    let after_dlq = stack.depth(&dlq).await;
    let after_queue = stack.depth(&queue).await;
    assert_eq!((after_dlq, after_queue), (0, 1), "the message is back in its queue");
    assert_eq!(before, after_dlq + after_queue, "nothing lost, nothing duplicated");
}
