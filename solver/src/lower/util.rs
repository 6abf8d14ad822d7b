//! Small pure helpers of the lowering: reference normalisation, path rules, port specs,
//! signals, chmod values, instruction locations.

use rbuild_parser::ast::Instruction;
use rbuild_parser::error::Location;
use rbuild_parser::source::{Position, Span};

/// Normalises an image reference as `docker/distribution`'s `ParseNormalizedNamed` +
/// `TagNameOnly` do: `alpine` → `docker.io/library/alpine:latest`,
/// `ghcr.io/o/r@sha256:…` kept, `index.docker.io` → `docker.io`.
pub fn normalize_reference(reference: &str) -> Result<String, String> {
    let bad = |why: &str| format!("invalid reference format {reference:?}: {why}");
    if reference.is_empty() {
        return Err(bad("empty"));
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        let valid = d.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && !hex.is_empty()
                && hex.chars().all(|c| c.is_ascii_hexdigit())
                && alg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-_".contains(c))
        });
        if !valid {
            return Err(bad("bad digest"));
        }
    }
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if let Some(t) = tag {
        let valid = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !t.starts_with(['.', '-']);
        if !valid {
            return Err(bad("bad tag"));
        }
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    if path.is_empty()
        || path.split('/').any(|c| {
            c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        })
    {
        return Err(bad(
            "repository name must be lowercase alphanumerics and separators",
        ));
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// Go's `path.Clean` for `/`-separated absolute or relative paths.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// BuildKit's `system.NormalizePath(base, p, keepSlash)` for Unix: `p` resolved against
/// `base` (when relative) and cleaned; with `keep_slash`, a trailing `/` (or `/.`) of `p`
/// survives.
pub fn normalize_path(base: &str, p: &str, keep_slash: bool) -> String {
    let joined = if p.starts_with('/') {
        clean(p)
    } else {
        clean(&format!("{}/{p}", if base.is_empty() { "/" } else { base }))
    };
    if keep_slash && (p.ends_with('/') || p.ends_with("/.")) && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

/// `pathRelativeToWorkingDir`: a COPY destination resolved against WORKDIR.
pub fn dest_path(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        return normalize_path("/", dest, true);
    }
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    normalize_path(workdir, dest, true)
}

/// Whether a path holds glob characters (`*`, `?`, `[`, honouring `\` escapes).
pub fn contains_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' | '[' => return true,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    false
}

/// BuildKit's `parsePortSpecs` for EXPOSE: `80`, `80/udp`, `8000-8002`,
/// `127.0.0.1:80:80/tcp` → `port/proto` entries.
pub fn parse_port_specs(ports: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for raw in ports {
        let parts: Vec<&str> = raw.split(':').collect();
        let (ip, host, container) = match parts.len() {
            1 => ("".to_string(), "", parts[0]),
            2 => ("".to_string(), parts[0], parts[1]),
            n => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
        };
        let (port, proto) = container.split_once('/').unwrap_or((container, ""));
        if port.is_empty() {
            return Err(format!("no port specified: {container}<empty>"));
        }
        let proto = match proto.to_ascii_lowercase().as_str() {
            "" => "tcp".to_string(),
            p @ ("tcp" | "udp" | "sctp") => p.to_string(),
            p => return Err(format!("invalid proto: {p}")),
        };
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("invalid IP address: {ip}"));
        }
        let (start, end) =
            port_range(port).ok_or_else(|| format!("invalid containerPort: {port}"))?;
        if !host.is_empty() {
            let (hs, he) = port_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?;
            if end - start != he - hs && end != start {
                return Err(format!(
                    "invalid ranges specified for container and host Ports: {port} and {host}"
                ));
            }
        }
        for p in start..=end {
            out.push(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

fn port_range(ports: &str) -> Option<(u32, u32)> {
    let parse = |s: &str| s.parse::<u16>().ok().map(u32::from);
    match ports.split_once('-') {
        None => parse(ports).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            (b >= a).then_some((a, b))
        }
    }
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// `moby/sys/signal.ParseSignal`: a number, or a name with or without `SIG`.
pub fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return n > 0 && n <= 64;
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if SIGNALS.contains(&name) {
        return true;
    }
    for base in ["RTMIN+", "RTMAX-"] {
        if let Some(n) = name.strip_prefix(base) {
            return n.parse::<u32>().is_ok_and(|n| n <= 30);
        }
    }
    false
}

/// A `--chmod` value: octal up to 07777, or a symbolic mode (`u+x,g-w`).
pub fn check_chmod(mode: &str) -> Result<(), String> {
    let octal_err = || {
        format!(
            "invalid chmod parameter: '{mode}'. it should be octal string and between 0 and 07777"
        )
    };
    if mode.chars().all(|c| c.is_ascii_digit()) && !mode.is_empty() {
        return match u32::from_str_radix(mode, 8) {
            Ok(n) if n <= 0o7777 => Ok(()),
            _ => Err(octal_err()),
        };
    }
    let valid_clause = |clause: &str| {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        !rest.is_empty()
            && rest.starts_with(['+', '-', '='])
            && rest.chars().all(|c| "+-=rwxXstugo".contains(c))
    };
    if !mode.is_empty() && mode.split(',').all(valid_clause) {
        Ok(())
    } else {
        Err(format!("invalid chmod parameter: '{mode}'"))
    }
}

/// The location of an instruction's first line, without the source text at hand (the
/// line is rebuilt from the instruction as written).
pub fn instruction_location(file: &str, inst: &Instruction) -> Location {
    let first = inst.original.lines().next().unwrap_or("").trim_start();
    span_location(file, inst.span, first)
}

/// A location at `span` whose line reads `text` (from the span's column).
pub fn span_location(file: &str, span: Span, text: &str) -> Location {
    let start = span.start;
    let line_text = format!("{}{text}", " ".repeat(start.column.saturating_sub(1)));
    let end = if span.end.line == start.line {
        span.end
    } else {
        Position {
            line: start.line,
            column: start.column + text.chars().count(),
            offset: start.offset + text.len(),
        }
    };
    Location {
        file: file.to_string(),
        span: Span { start, end },
        line_text,
    }
}

/// BuildKit's `summarizeHeredoc`: the first line, `...` when there are more.
pub fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim();
    let mut lines = doc.split('\n');
    let first = lines
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let n = |s: &str| normalize_reference(s).unwrap();
        assert_eq!(n("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(n("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(n("user/app"), "docker.io/user/app:latest");
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(n("ghcr.io/o/r:v1"), "ghcr.io/o/r:v1");
        assert_eq!(
            n("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("alpine@{d}")),
            format!("docker.io/library/alpine@{d}")
        );
        assert_eq!(
            n(&format!("alpine:3@{d}")),
            format!("docker.io/library/alpine:3@{d}")
        );
        assert!(normalize_reference("Alpine").is_err());
        assert!(normalize_reference("a:b:c").is_err());
        assert!(normalize_reference("").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(normalize_path("/app", "src", false), "/app/src");
        assert_eq!(dest_path("/app", "."), "/app/");
        assert_eq!(dest_path("/app", "out/"), "/app/out/");
        assert_eq!(dest_path("/app", "/etc/x"), "/etc/x");
        assert_eq!(dest_path("/", "a/.."), "/");
        assert_eq!(dest_path("/w", "/"), "/");
    }

    #[test]
    fn ports() {
        let p = |v: &[&str]| parse_port_specs(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["80"]).unwrap(), ["80/tcp"]);
        assert_eq!(
            p(&["53/UDP", "8000-8001"]).unwrap(),
            ["53/udp", "8000/tcp", "8001/tcp"]
        );
        assert_eq!(p(&["127.0.0.1:8080:80"]).unwrap(), ["80/tcp"]);
        assert!(p(&["80/xyz"]).is_err());
        assert!(p(&["99999"]).is_err());
    }

    #[test]
    fn signals_and_modes() {
        assert!(valid_signal("SIGTERM") && valid_signal("term") && valid_signal("9"));
        assert!(valid_signal("SIGRTMIN+3"));
        assert!(!valid_signal("SIGFOO") && !valid_signal("0"));
        assert!(check_chmod("0755").is_ok() && check_chmod("u+x,g-w").is_ok());
        assert!(check_chmod("9").unwrap_err().contains("octal"));
        assert!(check_chmod("17777").is_err());
        assert!(check_chmod("bogus").is_err());
    }

    #[test]
    fn wildcards_and_heredoc_summary() {
        assert!(contains_wildcards("*.go") && !contains_wildcards("a\\*b"));
        assert_eq!(summarize_heredoc("\necho a\necho b\n"), "echo a...");
        assert_eq!(summarize_heredoc("echo a\n"), "echo a");
    }
}
