//! stagehand: an actor-based job runtime. This crate is the service: settings, the built-in
//! processors, storage, the HTTP API and the CLI. The actors are in `stagehand-actors`, the
//! job model and stores in `stagehand-core`; both are re-exported here.
//!
//! Embedding in an actix-web app: build a runtime with [`actors::Runtime::builder`] (or
//! [`service::runtime_builder`] from settings), `start()` it inside the actix system, and mount
//! [`http::scope`] in your `App`. See `examples/embed_actix_web.rs`.

pub mod alerts;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod processors;
pub mod pubsub;
pub mod schedules;
pub mod service;
pub mod storage;

pub use stagehand_actors as actors;
pub use stagehand_core as core;
