//! `rbuild-sandbox-init`: only the sandbox init entry point, for test harnesses (see
//! `sandbox::set_init_program`). The `rbuild` binary carries the same entry point.

use std::process::ExitCode;

fn main() -> ExitCode {
    rbuild_executor::sandbox_init_entry().unwrap_or_else(|| {
        eprintln!("rbuild-sandbox-init: internal entry point of rbuild's sandbox");
        ExitCode::from(2)
    })
}
