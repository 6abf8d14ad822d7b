//! `--reproducible`: `SOURCE_DATE_EPOCH` from the newest commit of the context's git
//! checkout (`git log -1 --format=%ct`), so two clones build the same image. An explicit
//! `SOURCE_DATE_EPOCH` (environment or `--build-arg`) wins. The epoch then sets the image's
//! and history's created times and clamps file mtimes in new layers (see `export`).

use std::path::Path;
use std::process::Command;

/// The commit time (Unix seconds) of `HEAD` in the git checkout holding `dir`.
pub fn commit_time(dir: &Path) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "--reproducible reads the last commit time with git, which is not installed (or set SOURCE_DATE_EPOCH)".to_string()
            } else {
                format!("--reproducible: running git: {e}")
            }
        })?;
    if !out.status.success() {
        return Err(format!(
            "--reproducible: {} is not a git checkout with a commit (or set SOURCE_DATE_EPOCH): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "--reproducible: {} has no commit yet (git log printed {text:?})",
            dir.display()
        ));
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn not_a_git_checkout_is_a_clear_error() {
        if Command::new("git").arg("--version").output().is_err() {
            println!("skipped: git not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let e = commit_time(d.path()).unwrap_err();
        assert!(e.contains("not a git checkout"), "{e}");
    }
}
