//! The sandbox on a pseudo-terminal (`Stdio::Pty`) and with `init` (root only).

use std::io::Write as _;

use rbuild_executor::tty::{PtyIo, TtySpec};
use rbuild_executor::{ProcessSpec, RunOptions, Stdio};

use crate::common::{UnmountGuard, busybox_rootfs, require_root, use_test_init};

fn rootfs(what: &str) -> Option<(tempfile::TempDir, UnmountGuard)> {
    if !require_root(what) {
        return None;
    }
    use_test_init();
    let dir = tempfile::tempdir().unwrap();
    if !busybox_rootfs(&dir.path().join("rootfs")) {
        return None;
    }
    let guard = UnmountGuard(dir.path().to_path_buf());
    Some((dir, guard))
}

#[test]
fn pty_is_the_process_terminal_and_takes_input() {
    let Some((dir, _g)) = rootfs("sandbox pty") else {
        return;
    };
    let spec = ProcessSpec::new(
        dir.path().join("rootfs"),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "tty; stty size; [ -t 0 ] && [ -t 2 ] && echo both; read x; echo \"got $x\"; exit 5"
                .into(),
        ],
    );
    let mut output = Vec::new();
    let mut on_output = |b: &[u8]| output.extend_from_slice(b);
    let io = PtyIo {
        tty: TtySpec {
            size: Some((30, 80)),
        },
        on_master: Some(Box::new(|m| {
            let mut f = std::fs::File::from(m);
            f.write_all(b"typed\n").unwrap();
        })),
        on_output: &mut on_output,
    };
    let st = rbuild_executor::run(&spec, Stdio::Pty(io), &RunOptions::default()).unwrap();
    let text = String::from_utf8_lossy(&output).into_owned();
    assert_eq!(st.code, 5, "{text:?}");
    assert!(text.contains("/dev/pts/0\r\n"), "{text:?}");
    assert!(text.contains("30 80\r\n"), "{text:?}");
    assert!(text.contains("both\r\n"), "{text:?}");
    assert!(text.contains("got typed\r\n"), "{text:?}");
}

#[test]
fn init_runs_the_command_as_its_child() {
    let Some((dir, _g)) = rootfs("sandbox init") else {
        return;
    };
    let mut spec = ProcessSpec::new(
        dir.path().join("rootfs"),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo pid=$$ ppid=$PPID; exit 9".into(),
        ],
    );
    spec.init = true;
    let st = rbuild_executor::run(
        &spec,
        Stdio::Capture {
            tail: 10,
            on_line: None,
        },
        &RunOptions::default(),
    )
    .unwrap();
    assert_eq!(st.code, 9, "{st:?}");
    assert_eq!(st.tail, vec!["pid=2 ppid=1".to_string()]);
    spec.argv = vec!["/no/such".into()];
    let st = rbuild_executor::run(&spec, Stdio::Null, &RunOptions::default()).unwrap();
    assert_eq!(st.code, 127, "{st:?}");
    assert!(st.message.unwrap_or_default().contains("no such file"));
}
