//! Subscribers never lose events: `mlsec subscribe` deletes an event only after it wrote
//! it, and with `--ack-after` only after the consumer command exited 0.

use std::time::Duration;

use mlsec_cli::ops::{Subscription, deliver};
use mlsec_events::{Envelope, ModelReviewed};
use mlsec_tests::Stack;

async fn publish(stack: &Stack, n: usize) {
    let events: Vec<Envelope> = (0..n)
        .map(|i| {
            Envelope::wrap(&ModelReviewed {
                event_id: format!("review-{i}"),
                correlation_id: "c".into(),
                model_name: "fraud_lr".into(),
                model_version: "v".into(),
                action: "approve".into(),
                round: 2,
                occurred_at_ms: 0,
            })
            .unwrap()
        })
        .collect();
    stack.dep.ports("operator").bus.publish(&events).await.unwrap();
}

/// Everything the subscription hands out within `wait`, by event id (not acknowledged).
async fn take(sub: &Subscription, n: usize) -> Vec<mlsec_cli::ops::Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(sub.receive(1).await.unwrap());
    }
    got
}

fn ids(d: &[mlsec_cli::ops::Delivery]) -> Vec<String> {
    let mut ids: Vec<String> = d.iter().map(|d| d.received.event_id.clone()).collect();
    ids.sort();
    ids
}

/// A writer whose pipe has closed.
struct Closed;
impl std::io::Write for Closed {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_deleted_only_after_it_was_written_and_the_consumer_accepted_it() {
    let stack = Stack::new("subscribe").await;
    let sub = Subscription::create(&stack.dep, "consumer", &["ModelReviewed".into()]).await.unwrap();
    publish(&stack, 3).await;
    let first = take(&sub, 3).await;
    assert_eq!(ids(&first), ["review-0", "review-1", "review-2"]);

    // The consumer fails: every event comes again.
    let mut out = Vec::new();
    let done = deliver(&sub, first, &mut out, Some("cat > /dev/null; exit 3"), 0).await.unwrap();
    assert_eq!((done.acked, done.returned), (0, 3));
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3, "written before the consumer ran");

    // The output pipe is closed: delivery stops, the event is kept.
    let again = take(&sub, 3).await;
    assert_eq!(ids(&again), ["review-0", "review-1", "review-2"], "nothing was lost");
    assert!(deliver(&sub, again, &mut Closed, None, 0).await.is_err());

    // The consumer accepts: written, handed over, deleted.
    let file = std::env::temp_dir().join(format!("{}-consumed.jsonl", stack.dep.names.prefix));
    let cmd = format!("cat >> {}", file.display());
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked < 3 && tokio::time::Instant::now() < deadline {
        let batch = sub.receive(1).await.unwrap();
        acked += deliver(&sub, batch, &mut std::io::sink(), Some(&cmd), 0).await.unwrap().acked;
    }
    assert_eq!(acked, 3);
    let consumed = std::fs::read_to_string(&file).unwrap();
    let mut seen: Vec<String> = consumed
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event_id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["review-0", "review-1", "review-2"]);
    std::fs::remove_file(&file).ok();
    // Nothing is left once accepted.
    assert!(sub.receive(2).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_consumer_decodes_the_events_from_the_schemas_alone() {
    let stack = Stack::new("pyconsumer").await;
    let sub = Subscription::create(&stack.dep, "python", &["ModelReviewed".into()]).await.unwrap();
    publish(&stack, 2).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("docs/examples/python-consumer/consume.py"))
        .args(["--queue-url", &sub.queue_url, "--max", "2", "--wait", "5"])
        .output()
        .expect("the project's virtualenv (scripts/localstack.sh install)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    lines.sort_by_key(|l| l["event_id"].as_str().unwrap().to_string());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["schema"], "ModelReviewed");
        assert_eq!(l["event"]["event_id"], format!("review-{i}"));
        assert_eq!((l["event"]["action"].as_str(), l["event"]["round"].as_i64()), (Some("approve"), Some(2)));
    }
    // It deleted only what it printed: nothing is left.
    assert!(sub.receive(2).await.unwrap().is_empty());
}
