//! mm-status-sync as a library: the binary in `main.rs` is a thin shell over these modules, and tests and
//! benchmarks reach the same code.
//!
//! Reading order: `config` (what the user asked for), `detect` (who holds a camera), `meeting` (the pure rules
//! that decide which Mattermost calls to make), `mattermost` (the only code that opens sockets), `state` (the
//! backup on disk), `sync` (the shell that ties the rules to the server and the disk), `daemon` (the one loop).
//! See ARCHITECTURE.md.
//!
//! # Public surface
//!
//! Everything the binary alone needs is `pub(crate)`, so the compiler reports what nothing uses. What is `pub` is
//! there for a user outside the crate, and only for it:
//! - `cli::main`: the binary.
//! - `detect`: `DeviceSet`, `Filter`, `Pattern`, `Scanner` (with `Holder`, `ScanStats`, `Verdict`, `DeviceClass`),
//!   `Watcher` and `Wake`: the detection tests against the real kernel (`tests/detect.rs`,
//!   `tests/detect_odd_paths.rs`, `tests/scan_alloc.rs`) and the scan benchmark (`examples/bench_scan.rs`).
//! - `sys::CountingAllocator` and `sys::poll_readable`: the allocation-free scan is measured and the watcher waited
//!   on by those same tests and the benchmark.
//! - `config::docs`: the generated README table, `config.env` and man page, for `examples/gen_docs.rs` and
//!   `tests/generated_docs.rs`.
//! - `config::file::parse`, `config::{Inputs, Config, ConfigError, render}`: loading a configuration as `--config`
//!   does, for the `config_file` fuzz target (`config::file::parse` also for `tests/snap_hook.rs`).
//! - `state::parse`: the `state_file` fuzz target.
//! - `mattermost::{parse_every_response, custom_status_request_body}` (hidden): the `server_response` fuzz target.
//!
//! The types these return or hold (`Backup`, `MeetingSettings`, `BaseUrl`, `Secret`, `LogTarget`, the server's
//! shapes in `model`) are `pub` in private modules: reachable through the items above, not nameable. The
//! `unreachable_pub` lint keeps any other `pub` out.

#![warn(unreachable_pub)]

mod base_url;
pub mod cli;
pub mod config;
mod daemon;
mod debounce;
pub mod detect;
mod hooks;
mod logger;
pub mod mattermost;
mod meeting;
mod model;
mod notify;
mod secret;
pub mod state;
mod sync;
pub mod sys;
mod time;
mod wiring;
