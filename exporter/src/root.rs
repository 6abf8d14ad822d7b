//! Where rbuild keeps its state: `--root`, else `RBUILD_ROOT`, else
//! `/var/lib/rbuild` for root, else `$XDG_DATA_HOME/rbuild`
//! (`~/.local/share/rbuild` when XDG_DATA_HOME is unset).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The root for system-wide (euid 0) use.
pub const SYSTEM_ROOT: &str = "/var/lib/rbuild";

/// Resolves the rbuild root from an explicit flag, then the environment.
///
/// The CLI's `--root` flag already folds in `RBUILD_ROOT` through clap; the env
/// lookup here serves library users that pass `None`.
pub fn resolve_root(flag: Option<&Path>) -> Result<PathBuf> {
    resolve_with(
        flag,
        |k| std::env::var_os(k).filter(|v| !v.is_empty()),
        rustix::process::geteuid().is_root(),
    )
}

fn resolve_with(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    is_root: bool,
) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = env("RBUILD_ROOT") {
        return Ok(PathBuf::from(p));
    }
    if is_root {
        return Ok(PathBuf::from(SYSTEM_ROOT));
    }
    if let Some(xdg) = env("XDG_DATA_HOME") {
        let xdg = PathBuf::from(xdg);
        // The XDG spec says relative values are invalid and must be ignored.
        if xdg.is_absolute() {
            return Ok(xdg.join("rbuild"));
        }
    }
    match env("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/rbuild")),
        None => Err(Error::InvalidImage {
            what: "rbuild root".into(),
            reason: "neither --root, RBUILD_ROOT, XDG_DATA_HOME nor HOME is set".into(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn precedence() {
        let all = env(&[
            ("RBUILD_ROOT", "/env"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            resolve_with(Some(Path::new("/flag")), &all, false).unwrap(),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_with(None, &all, true).unwrap(),
            PathBuf::from("/env")
        );
        let no_env = env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve_with(None, &no_env, true).unwrap(),
            PathBuf::from(SYSTEM_ROOT)
        );
        assert_eq!(
            resolve_with(None, &no_env, false).unwrap(),
            PathBuf::from("/xdg/rbuild")
        );
        let home = env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve_with(None, &home, false).unwrap(),
            PathBuf::from("/home/u/.local/share/rbuild")
        );
        assert!(resolve_with(None, env(&[]), false).is_err());
    }
}
