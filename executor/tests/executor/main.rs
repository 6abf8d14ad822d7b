//! The executor's one integration-test binary. Modules: snapshot, sandbox (root only; they
//! print `skipped: ...` and pass otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod context;
mod fileop;
mod net;
mod sandbox;
mod security;
mod snapshot;
mod tty;
