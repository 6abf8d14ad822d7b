//! The executor's one integration-test binary. Modules: snapshot, sandbox (root only; they
//! print `skipped: ...` and pass otherwise).

mod common;
