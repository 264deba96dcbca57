//! Provisioning follows the topology and is harmless to repeat.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use mlsec_aws::provision;
use mlsec_runtime::topology::SQS_MAX_MESSAGE_BYTES;
use mlsec_tests::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_twice_is_harmless_and_queues_follow_the_topology() {
    let stack = Stack::new("provision").await;
    let dep = &stack.dep;
    let again = provision::provision(dep).await.expect("second provisioning succeeds");
    assert_eq!(again.queues.len(), dep.topology.workers.len());
    for (worker, decl) in &dep.topology.workers {
        let url = dep.queue_url(&dep.names.queue(worker)).await.unwrap();
        let attrs = dep
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let attrs = attrs.attributes().unwrap();
        assert_eq!(attrs[&QueueAttributeName::MaximumMessageSize], SQS_MAX_MESSAGE_BYTES.to_string());
        assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], decl.queue.visibility_timeout_seconds.to_string());
        let redrive: serde_json::Value = serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
        assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), decl.queue.max_receive_count.to_string());
        assert!(redrive["deadLetterTargetArn"].as_str().unwrap().ends_with(&dep.names.dlq(worker)));
    }
    for (bucket, decl) in &dep.topology.buckets {
        let name = stack.bucket(bucket);
        // moto 5.2 answers GetBucketVersioning with a root element the SDK rejects, so
        // versioning is checked by its effect: a put returns a version id.
        let put =
            dep.s3.put_object().bucket(&name).key("probe").body(ByteStream::from_static(b"x")).send().await.unwrap();
        assert!(put.version_id().is_some_and(|v| v != "null"), "{name} is versioned");
        let enc = dep.s3.get_bucket_encryption().bucket(&name).send().await.unwrap();
        let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
        let default = rule.apply_server_side_encryption_by_default().unwrap();
        assert_eq!(default.sse_algorithm().as_str(), "aws:kms");
        assert_eq!(default.kms_master_key_id(), Some(dep.key_arn(&decl.key).await.unwrap().as_str()));
    }
}
