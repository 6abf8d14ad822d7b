//! BuildKit's own parser test cases: positive dumps, negative cases, line numbers.

use rbuild_parser::{Source, raw};

use crate::{case_dirs, corpora};

fn parse_file(path: &std::path::Path) -> Result<raw::ParsedFile, rbuild_parser::ParseError> {
    let bytes = std::fs::read(path).unwrap();
    let text = rbuild_parser::decode("Dockerfile", &bytes)?;
    raw::parse(&Source::new("Dockerfile", text))
}

#[test]
fn positive_cases_dump_like_buildkit() {
    let dirs = case_dirs(&corpora().join("buildkit-parser"));
    assert!(dirs.len() >= 30, "corpus missing: {} cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let expected = std::fs::read_to_string(dir.join("result")).unwrap();
        match parse_file(&dir.join("Dockerfile")) {
            Ok(parsed) if parsed.dump() == expected => {}
            Ok(parsed) => failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{}",
                dir.display(),
                parsed.dump()
            )),
            Err(e) => failures.push(format!("{}: {}", dir.display(), e.render())),
        }
    }
    println!(
        "{} of {} BuildKit parser cases match",
        dirs.len() - failures.len(),
        dirs.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_are_rejected() {
    let dirs = case_dirs(&corpora().join("buildkit-parser-negative"));
    assert_eq!(dirs.len(), 4);
    for dir in &dirs {
        let result = parse_file(&dir.join("Dockerfile"));
        assert!(result.is_err(), "{} parsed", dir.display());
    }
}

#[test]
fn line_numbers_match_buildkit() {
    let parsed =
        parse_file(&corpora().join("buildkit-parser-extra/testfile-line/Dockerfile")).unwrap();
    let lines: Vec<(usize, usize)> = parsed
        .instructions
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn overlong_line_is_rejected_and_limit_line_accepted() {
    let ok = format!("FROM x\nRUN {}\n", "a".repeat(65535 - 4));
    assert!(raw::parse(&Source::new("Dockerfile", ok)).is_ok());
    let long = format!("FROM x\nRUN {}\n", "a".repeat(65536));
    let err = raw::parse(&Source::new("Dockerfile", long)).unwrap_err();
    assert!(
        err.to_string()
            .contains("dockerfile line greater than max allowed size of 65535")
    );
}

#[test]
fn empty_continuation_lines_warn_once_per_instruction() {
    let text = "FROM busybox\nRUN echo a \\\n\n  b \\\n\n  c\nRUN echo d \\\n# comment\n  e\n";
    let parsed = raw::parse(&Source::new("Dockerfile", text)).unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    assert!(
        parsed.warnings[0]
            .message
            .starts_with("Empty continuation line found in: RUN echo a")
    );
}
