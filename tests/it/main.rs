//! marina's integration suite: a real server on a real socket, driven over HTTP, organised by
//! the spec's four workflows, plus the invariants, memory, and a real OCI client.

#![allow(unreachable_pub)]

mod auth;
mod bench;
mod clients;
mod common;
mod discovery;
mod early_answers;
mod expiry;
mod fake_upstream;
mod garage;
mod gc;
mod gc_storm;
mod integrity;
mod invariants;
mod limits;
mod management;
mod memory;
mod notifications;
mod operations;
mod proxy;
mod proxy_upstreams;
mod pull;
mod push;
mod replica_race;
mod s3;
mod tls;
