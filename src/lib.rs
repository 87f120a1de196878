//! im-server: an instant-messaging server that the egg.js IM application's clients use unchanged.
//! See docs/architecture.md for the layers: `http`/`realtime` → `domain` → `store`.

pub mod app;
pub mod cli;
pub mod config;
pub mod connections;
pub mod domain;
pub mod http;
pub mod logging;
pub mod progress;
pub mod realtime;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod timeouts;
