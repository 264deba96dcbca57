//! AWS adapters for the worker ports, the local SQS driver, the provisioner and the
//! operators' queue tools.
//!
//! The same code reaches real AWS or the local emulator: `AWS_ENDPOINT_URL` (read by
//! `aws_config`) decides. S3 uses path-style addressing when an endpoint is set.

pub mod audit;
pub mod deployment;
pub mod driver;
pub mod dynamo;
pub mod errors;
pub mod eventbridge;
pub mod identity;
pub mod kms;
pub mod provision;
pub mod queues;
pub mod s3;

pub use deployment::Deployment;
