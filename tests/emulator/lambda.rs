//! The Lambda entry of the ingest worker, called with a real-shape SQS event of two
//! messages where one is corrupt, reports exactly that message in `batchItemFailures`;
//! a redelivery of the good one is recognised as a duplicate. The Lambda driver's SQS
//! adapter brings a failed message back before the queue's visibility timeout.

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_s3::primitives::ByteStream;
use mlsec_cli::ops::drop_bytes;
use mlsec_runtime::{
    inbound::eventbridge_body,
    lambda::{Timing, handle_sqs_event},
    sample::{SampleKind, csv_bytes},
};
use mlsec_tests::Stack;

fn sqs_event(records: &[(&str, String)]) -> SqsEvent {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(id, body)| {
            serde_json::json!({
                "messageId": id,
                "receiptHandle": format!("AQEB-{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764300000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764300000001"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:mlsec-ingest",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_entry_reports_exactly_the_corrupt_message() {
    let stack = Stack::new("lambda").await;
    let dep = &stack.dep;
    let key = "bank-core/transactions_training/l.csv";
    drop_bytes(dep, key, ByteStream::from(csv_bytes(SampleKind::Training, 30, 9))).await.unwrap();
    let head = dep.s3.head_object().bucket(stack.bucket("landing")).key(key).send().await.unwrap();
    let detail = serde_json::json!({
        "version": "0",
        "bucket": { "name": stack.bucket("landing") },
        "object": { "key": key, "size": head.content_length(), "etag": head.e_tag(), "version-id": head.version_id() },
        "reason": "PutObject",
        "requester": "123456789012"
    });
    let good = eventbridge_body("aws.s3", "Object Created", detail);
    let corrupt = r#"{"version":"0","detail-type":"RawAccepted","source":"mlsec.ingest","detail":{"schema":"RawAccepted","payload":"%%%"}}"#;

    let worker = mlsec_host::ingest(dep, stack.contracts.clone()).await.unwrap();
    let books = dep.books("ingest");
    let retry = dep.retry_scheduler();
    let timing = Timing { retry_delay: 0, window: 120 };
    let event = sqs_event(&[("msg-good", good.clone()), ("msg-corrupt", corrupt.to_string())]);
    let response = handle_sqs_event(&worker, &books, retry.as_ref(), timing, event, None).await.unwrap();
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["msg-corrupt"]);
    let raw = stack.keys("raw").await;
    assert_eq!(raw.len(), 3, "original, Parquet and ledger entry of the good message: {raw:?}");

    // Redelivery of the good message: no failure, and no second copy in raw.
    let again = handle_sqs_event(&worker, &books, retry.as_ref(), timing, sqs_event(&[("msg-good-2", good)]), None)
        .await
        .unwrap();
    assert!(again.batch_item_failures.is_empty());
    let versions = dep.s3.list_object_versions().bucket(stack.bucket("raw")).send().await.unwrap();
    assert_eq!(versions.versions().len(), 3, "the duplicate wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_message_comes_back_before_the_visibility_timeout() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let stack = Stack::new("lambda-retry").await;
    let dep = &stack.dep;
    let url = dep.queue_url(&dep.names.queue("curate")).await.unwrap();
    let attrs = dep.sqs.get_queue_attributes().queue_url(&url).attribute_names(QueueAttributeName::All).send().await;
    let attrs = attrs.unwrap().attributes().cloned().unwrap();
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "120", "the queue holds a received message 2 minutes");
    let arn = attrs[&QueueAttributeName::QueueArn].clone();
    dep.sqs.send_message().queue_url(&url).message_body("m").send().await.unwrap();
    let receive = || async {
        dep.sqs.receive_message().queue_url(&url).wait_time_seconds(1).send().await.unwrap().messages().to_vec()
    };
    let first = receive().await;
    let receipt = first[0].receipt_handle().unwrap().to_string();
    assert!(receive().await.is_empty(), "in flight");
    dep.retry_scheduler().retry_after(&arn, &receipt, 0).await.unwrap();
    let again = receive().await;
    assert_eq!(again.len(), 1, "back at once, not after the window");
    assert_eq!(again[0].body(), Some("m"));
}
