//! Test support shared by the integration test crates (`mod support;`): a fake Mattermost server that speaks the
//! real protocol over real sockets, and a throw-away TLS certificate authority for it.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod child;
pub mod daemon_run;
pub mod fake_mattermost;
pub mod go_json;
pub mod go_time;
pub mod http;
pub mod tls;

pub use fake_mattermost::EchoStyle;
pub use fake_mattermost::{
    CustomStatus, FakeMattermost, FakeUser, Fault, FaultBody, FaultScope, RateLimit, RecordedCall, UserState,
};
pub use tls::TestTls;
