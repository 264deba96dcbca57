//! Emulator tests: the real AWS SDK against moto server, the whole chain. One binary
//! (one link) for all of them; each test provisions its own prefix.

mod audit;
mod canary;
mod chain;
mod claims;
mod dlq;
mod interop;
mod lambda;
mod onboarding;
mod provisioning;
mod quarantine;
mod review;
mod subscribe;
mod tamper;
