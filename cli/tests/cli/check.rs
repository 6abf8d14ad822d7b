//! `rbuild check` and `rbuild debug parse` exit codes and output.

use crate::{rbuild, workspace};

fn path(rel: &str) -> String {
    workspace().join(rel).display().to_string()
}

#[test]
fn check_accepts_the_example_and_reports_no_errors() {
    let out = rbuild(&["check", &path("examples/hello")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Check complete"));
}

#[test]
fn check_fails_with_a_located_diagnostic() {
    let file = path("testdata/parser-errors/unknown-instruction/Dockerfile");
    let out = rbuild(&["check", "-f", &file]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: unknown instruction: RUNN"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:2:1")), "{stderr}");
    assert!(stderr.contains("^^^^"), "{stderr}");
    assert!(stderr.contains("did you mean `RUN`?"), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = rbuild(&["check", "-f", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/Dockerfile"));
}

#[test]
fn debug_parse_json_matches_the_golden_file() {
    let dir = workspace().join("testdata/parser/heredocs");
    let out = rbuild(&[
        "debug",
        "parse",
        "--json",
        &dir.join("Dockerfile").display().to_string(),
    ]);
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(got, want);
}

#[test]
fn debug_parse_rejects_syntax_errors() {
    let file = path("testdata/parser-errors/unterminated-heredoc/Dockerfile");
    let out = rbuild(&["debug", "parse", "--json", &file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unterminated heredoc"));
}
