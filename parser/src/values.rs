//! Value grammars of instruction arguments and flags: stage names, chmod modes,
//! checksums, EXPOSE port specs and Go durations.

use std::time::Duration;

use nom::IResult;
use nom::Parser as _;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while};
use nom::combinator::{all_consuming, opt, recognize};
use nom::multi::many1;
use nom::sequence::pair;

/// `^[a-z][a-z0-9-_.]*$`, case-insensitively (names are lower-cased).
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `--chmod`: an octal mode (`0755`) or, since Dockerfile 1.10, a symbolic one like
/// chmod(1) takes (`u=rwx,go=rx`, `a+x`, `g-w`, `u+X`, `o=u`).
pub(crate) fn valid_chmod(mode: &str) -> bool {
    if !mode.is_empty() && mode.bytes().all(|b| b.is_ascii_digit()) {
        return mode.len() <= 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
    }
    !mode.is_empty()
        && mode.split(',').all(|clause| {
            let who_end = clause
                .find(|c: char| !matches!(c, 'u' | 'g' | 'o' | 'a'))
                .unwrap_or(clause.len());
            let mut rest = &clause[who_end..];
            if rest.is_empty() {
                return false;
            }
            // One or more `op perms` actions: `+x`, `=rw`, `-w+x`, `=u`.
            while let Some(op) = rest.chars().next() {
                if !matches!(op, '+' | '-' | '=') {
                    return false;
                }
                rest = &rest[1..];
                let perms_end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
                let perms = &rest[..perms_end];
                let copy = perms.len() == 1 && matches!(perms, "u" | "g" | "o");
                if !copy
                    && !perms
                        .chars()
                        .all(|c| matches!(c, 'r' | 'w' | 'x' | 'X' | 's' | 't'))
                {
                    return false;
                }
                rest = &rest[perms_end..];
            }
            true
        })
}

pub(crate) fn valid_checksum(sum: &str) -> bool {
    let Some((alg, hex)) = sum.split_once(':') else {
        return false;
    };
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks an EXPOSE word: `[ip:[hostport]:]port[-port][/proto]`, as Docker's
/// `nat.ParsePortSpecs` accepts it.
pub fn check_port(spec: &str) -> Result<(), String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (spec, None),
    };
    if let Some(proto) = proto
        && !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp")
    {
        return Err(format!("invalid proto: {proto}"));
    }
    let container = ports.rsplit(':').next().unwrap_or(ports);
    let valid = |p: &str| p.parse::<u16>().is_ok();
    let ok = match container.split_once('-') {
        Some((a, b)) => valid(a) && valid(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => valid(container),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid containerPort: {container}"))
    }
}

/// Go's `time.ParseDuration` (non-negative): `300ms`, `1.5h`, `2h45m`, `0`.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    fn number(i: &str) -> IResult<&str, &str> {
        recognize(pair(
            take_while(|c: char| c.is_ascii_digit()),
            opt(pair(tag("."), take_while(|c: char| c.is_ascii_digit()))),
        ))
        .parse(i)
    }
    fn unit(i: &str) -> IResult<&str, &str> {
        alt((
            tag("ns"),
            tag("us"),
            tag("µs"),
            tag("μs"),
            tag("ms"),
            tag("s"),
            tag("m"),
            tag("h"),
        ))
        .parse(i)
    }
    let bad = || format!("time: invalid duration {s:?}");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.starts_with('-') {
        return Err(format!("duration {s:?} cannot be negative"));
    }
    let parsed: IResult<&str, Vec<(&str, &str)>> =
        all_consuming(many1(pair(number, unit))).parse(body);
    let (_, parts) = parsed.map_err(|_| bad())?;
    let mut total = 0f64;
    for (num, unit) in parts {
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            _ => 3600e9,
        };
        total += n * nanos;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(format!("time: invalid duration {s:?} (overflow)"));
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "10", "1x", "-1s", "s", "1s2"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        for ok in [
            "80",
            "80/tcp",
            "53/UDP",
            "8000-8010",
            "127.0.0.1:80:80",
            "80:80/tcp",
        ] {
            assert!(check_port(ok).is_ok(), "{ok}");
        }
        for bad in ["http", "80/xyz", "9-1", "70000"] {
            assert!(check_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chmod_modes() {
        for ok in [
            "0755",
            "644",
            "7",
            "u=rwx,go=rx",
            "a+x",
            "g-w",
            "u+X",
            "o=u",
            "+x",
            "u-w+x",
        ] {
            assert!(valid_chmod(ok), "{ok}");
        }
        for bad in ["", "0788", "12345", "u", "u=rwz", "x+r", "u=rw,", "u+r;g+w"] {
            assert!(!valid_chmod(bad), "{bad}");
        }
    }

    #[test]
    fn stage_names() {
        assert!(valid_stage_name("build-env_1.x"));
        assert!(valid_stage_name("Builder"));
        assert!(!valid_stage_name("1st"));
        assert!(!valid_stage_name("a/b"));
    }
}
