//! mm-status-sync as a library: the binary in `main.rs` is a thin shell over these modules, and tests and
//! benchmarks reach the same code.
//!
//! Reading order: `config` (what the user asked for), `detect` (who holds a camera), `meeting` (the pure rules
//! that decide which Mattermost calls to make), `mattermost` (the only code that opens sockets), `state` (the
//! backup on disk), `sync` (the shell that ties the rules to the server and the disk), `daemon` (the one loop).
//! See ARCHITECTURE.md.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod debounce;
pub mod detect;
pub mod hooks;
pub mod logger;
pub mod mattermost;
pub mod meeting;
pub mod model;
pub mod notify;
pub mod state;
pub mod sync;
pub mod sys;
pub mod time;
