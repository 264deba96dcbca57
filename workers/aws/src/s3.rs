//! S3 adapter. Every put and copy is SSE-KMS with the destination zone's key and an S3
//! Bucket Key; there is no code path that writes an unencrypted object.

use async_trait::async_trait;
use aws_sdk_s3::{
    Client,
    primitives::ByteStream,
    types::{MetadataDirective, ServerSideEncryption},
};
use bytes::Bytes;
use mlsec_events::{ObjectRef, sha256_hex};
use mlsec_runtime::{
    WorkError,
    ports::{BucketRef, ByteChunks, ObjectHead, ObjectStore, Result, attempt},
};

use crate::errors::{classify, is_missing};

/// Object metadata key holding the hex SHA-256 the pipeline computed.
pub const SHA256_METADATA: &str = "sha256";
/// Object metadata key of a copy: the source it was copied from (`s3://bucket/key?versionId=…`),
/// so lineage can follow a raw original back to its landing object without reading it.
pub const SOURCE_METADATA: &str = "mlsec-source";

/// `s3://bucket/key`, with `?versionId=…` when pinned.
pub fn source_uri(o: &ObjectRef) -> String {
    match &o.version_id {
        Some(v) => format!("s3://{}/{}?versionId={v}", o.bucket, o.key),
        None => format!("s3://{}/{}", o.bucket, o.key),
    }
}

pub struct S3Store {
    client: Client,
}

impl S3Store {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        self.client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| classify("s3:GetObject", e))
    }

    /// On a retry only ([`attempt::is_retry`]): the latest version of `key` when it already
    /// holds `sha256` under `dest`'s key, so the write can be skipped. Any error (a 404, a
    /// 403 where the role may not read, the network) means "write it": skipping is an
    /// optimisation, never a reason to fail.
    async fn already_there(&self, dest: &BucketRef, key: &str, sha256: &str, size: i64) -> Option<ObjectRef> {
        if !attempt::is_retry() {
            return None;
        }
        let head = self.client.head_object().bucket(&dest.name).key(key).send().await.ok()?;
        let same = head.metadata().and_then(|m| m.get(SHA256_METADATA)).is_some_and(|d| d == sha256)
            && head.server_side_encryption() == Some(&ServerSideEncryption::AwsKms)
            && head.content_length() == Some(size)
            && head.ssekms_key_id().is_some_and(|k| same_key(k, &dest.kms_key_arn));
        if !same {
            return None;
        }
        tracing::info!(bucket = %dest.name, key, sha256, "retry: the key already holds this content; not written again");
        Some(ObjectRef {
            bucket: dest.name.clone(),
            key: key.to_string(),
            version_id: head.version_id().map(str::to_string),
            sha256: sha256.to_string(),
            size,
        })
    }

    /// The one place objects are written: SSE-KMS with the destination zone's key, an S3
    /// Bucket Key, and the pipeline's SHA-256 in the object metadata. A retry skips the
    /// write when the key already holds the same digest ([`Self::already_there`]).
    async fn put_body(
        &self,
        dest: &BucketRef,
        key: &str,
        content_type: &str,
        sha256: String,
        size: u64,
        body: ByteStream,
    ) -> Result<ObjectRef> {
        if let Some(existing) = self.already_there(dest, key, &sha256, size as i64).await {
            return Ok(existing);
        }
        let out = self
            .client
            .put_object()
            .bucket(&dest.name)
            .key(key)
            .content_type(content_type)
            .content_length(size as i64)
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&dest.kms_key_arn)
            .bucket_key_enabled(true)
            .metadata(SHA256_METADATA, &sha256)
            .body(body)
            .send()
            .await
            .map_err(|e| classify("s3:PutObject", e))?;
        Ok(ObjectRef {
            bucket: dest.name.clone(),
            key: key.to_string(),
            version_id: out.version_id().map(str::to_string),
            sha256,
            size: size as i64,
        })
    }
}

/// Whether two names of a KMS key (a key id or a key ARN) name the same key: equal, or the
/// same `key/<id>` last segment. Never a suffix match on part of an id.
fn same_key(a: &str, b: &str) -> bool {
    let id = |k: &str| k.rsplit_once("key/").map_or(k, |(_, id)| id).to_string();
    !a.is_empty() && (a == b || id(a) == id(b))
}

fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut encoded = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => encoded.push(b as char),
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    match version {
        Some(v) => format!("{bucket}/{encoded}?versionId={v}"),
        None => format!("{bucket}/{encoded}"),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ObjectHead> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| classify("s3:HeadObject", e))?;
        Ok(ObjectHead {
            size: out.content_length().unwrap_or(0),
            version_id: out.version_id().map(str::to_string),
            etag: out.e_tag().map(|e| e.trim_matches('"').to_string()),
            sse: out.server_side_encryption().map(|s| s.as_str().to_string()),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
        })
    }

    async fn tags(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await
            .map_err(|e| classify("s3:GetObjectTagging", e))?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    async fn get_optional(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Option<Bytes>> {
        let out = self.client.get_object().bucket(bucket).key(key).set_version_id(version.map(str::to_string)).send();
        let out = match out.await {
            Ok(out) => out,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(classify("s3:GetObject", e)),
        };
        let body = out.body.collect().await.map_err(|e| WorkError::transient("s3:GetObject body", e))?;
        Ok(Some(body.into_bytes()))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("s3:ListObjectsV2", e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        Ok(keys)
    }

    async fn get_stream(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<ByteChunks> {
        let out = self.get_object(bucket, key, version).await?;
        let stream = futures::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|chunk| (chunk.map_err(|e| WorkError::transient("s3:GetObject body", e)), body))
        });
        Ok(Box::pin(stream))
    }

    async fn put(&self, dest: &BucketRef, key: &str, body: Bytes, content_type: &str) -> Result<ObjectRef> {
        let (sha256, size) = (sha256_hex(&body), body.len() as u64);
        self.put_body(dest, key, content_type, sha256, size, ByteStream::from(body)).await
    }

    async fn put_file(
        &self,
        dest: &BucketRef,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<ObjectRef> {
        let (sha256, size) = file_digest(path).await?;
        let body = ByteStream::from_path(path).await.map_err(|e| WorkError::transient("read spill file", e))?;
        self.put_body(dest, key, content_type, sha256, size, body).await
    }

    async fn copy(&self, source: &ObjectRef, dest: &BucketRef, key: &str) -> Result<ObjectRef> {
        if let Some(existing) = self.already_there(dest, key, &source.sha256, source.size).await {
            return Ok(existing);
        }
        let out = self
            .client
            .copy_object()
            .copy_source(copy_source(&source.bucket, &source.key, source.version_id.as_deref()))
            .bucket(&dest.name)
            .key(key)
            .metadata_directive(MetadataDirective::Replace)
            .metadata(SHA256_METADATA, &source.sha256)
            .metadata(SOURCE_METADATA, source_uri(source))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(&dest.kms_key_arn)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(|e| classify("s3:CopyObject", e))?;
        Ok(ObjectRef {
            bucket: dest.name.clone(),
            key: key.to_string(),
            version_id: out.version_id().map(str::to_string),
            sha256: source.sha256.clone(),
            size: source.size,
        })
    }
}

/// SHA-256 and size of a file, read in 1 MiB blocks off the async runtime.
async fn file_digest(path: &std::path::Path) -> Result<(String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        use std::io::Read;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok::<_, std::io::Error>((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|e| WorkError::fatal(format!("digest task: {e}")))?
    .map_err(|e| WorkError::transient("read spill file", e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_names_match_by_whole_id_never_by_suffix() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab";
        assert!(super::same_key(arn, arn));
        assert!(super::same_key("1234abcd-12ab", arn));
        assert!(!super::same_key("12ab", arn), "a suffix of the id is another key");
        assert!(!super::same_key("", arn));
        assert!(!super::same_key("arn:aws:kms:us-east-1:123456789012:key/other", arn));
    }

    #[test]
    fn copy_source_encodes_keys_and_versions() {
        assert_eq!(super::copy_source("b", "a b/c+d.csv", Some("v1")), "b/a%20b/c%2Bd.csv?versionId=v1");
        assert_eq!(super::copy_source("b", "x/y.csv", None), "b/x/y.csv");
    }
}
