#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::helpers::levenshtein;
use super::*;

fn lint_with(text: &str, opts: &LintOptions<'_>) -> Vec<Diagnostic> {
    let df = crate::parse("Dockerfile", text).unwrap();
    lint(&df, &Source::new("Dockerfile", text), opts)
}

/// `(rule, message)` pairs.
fn check(text: &str) -> Vec<(String, String)> {
    pairs(&lint_with(text, &LintOptions::default()))
}

fn pairs(diags: &[Diagnostic]) -> Vec<(String, String)> {
    diags
        .iter()
        .map(|d| (d.rule.clone().unwrap_or_default(), d.message.clone()))
        .collect()
}

fn rules(text: &str) -> Vec<String> {
    check(text).into_iter().map(|(r, _)| r).collect()
}

/// The located text of each warning.
fn spans(text: &str) -> Vec<String> {
    lint_with(text, &LintOptions::default())
        .iter()
        .map(|d| {
            let s = d.location.as_ref().unwrap().span;
            text[s.start.offset..s.end.offset].to_string()
        })
        .collect()
}

#[test]
fn clean_file_has_no_warnings() {
    let text = "# syntax=docker/dockerfile:1\nARG BASE=alpine:3.20\nFROM $BASE AS build\nWORKDIR /src\nCOPY . .\nRUN make\n\nFROM scratch\nCOPY --from=build /src/app /app\nENTRYPOINT [\"/app\"]\n";
    assert_eq!(check(text), []);
}

#[test]
fn stage_name_casing_and_from_as_casing() {
    let text = "FROM alpine as Build\n";
    assert_eq!(
        check(text),
        [
            (
                "FromAsCasing".into(),
                "'as' and 'FROM' keywords' casing do not match".into()
            ),
            (
                "StageNameCasing".into(),
                "Stage name 'Build' should be lowercase".into()
            ),
        ]
    );
    assert_eq!(spans(text), ["as", "Build"]);
    assert_eq!(rules("from alpine AS b\n"), ["FromAsCasing"]);
    assert_eq!(rules("From alpine as b\n"), ["ConsistentInstructionCasing"]);
}

#[test]
fn consistent_instruction_casing_follows_majority() {
    let text = "FROM alpine\nrun echo\nRUN echo\nCopy a b\n";
    assert_eq!(
        check(text),
        [
            (
                "ConsistentInstructionCasing".into(),
                "Command 'run' should match the case of the command majority (uppercase)".into()
            ),
            (
                "ConsistentInstructionCasing".into(),
                "Command 'Copy' should match the case of the command majority (uppercase)".into()
            ),
        ]
    );
    assert_eq!(spans(text), ["run", "Copy"]);
    assert_eq!(
        rules("from a\nrun x\nRUN y\ncmd [\"z\"]\n"),
        ["ConsistentInstructionCasing"]
    );
}

#[test]
fn duplicate_and_reserved_stage_names() {
    let got = check("FROM a AS x\nFROM b AS X\nFROM c AS scratch\n");
    assert!(got.contains(&(
        "DuplicateStageName".into(),
        "Duplicate stage name \"x\", stage names should be unique".into()
    )));
    assert!(got.contains(&(
        "ReservedStageName".into(),
        "Stage name should not use the same name as reserved stage \"scratch\"".into()
    )));
}

#[test]
fn json_args_recommended_unless_shell_set() {
    let text = "FROM a\nCMD echo hi\nENTRYPOINT [\"x\"]\n";
    let d = lint_with(text, &LintOptions::default());
    assert_eq!(
        pairs(&d),
        [(
            "JSONArgsRecommended".into(),
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals".into()
        )]
    );
    assert_eq!(d[0].hint.as_deref(), Some("write `CMD [\"echo\", \"hi\"]`"));
    assert!(check("FROM a\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n").is_empty());
    // SHELL carries over to a child stage.
    assert!(check("FROM a AS b\nSHELL [\"sh\", \"-c\"]\nFROM b\nCMD echo hi\n").is_empty());
    let d = lint_with(
        "FROM a\nENTRYPOINT exec nginx -g 'daemon off;'\n",
        &LintOptions::default(),
    );
    assert!(
        d[0].hint
            .as_deref()
            .unwrap()
            .contains("\"/bin/sh\", \"-c\"")
    );
}

#[test]
fn maintainer_deprecated() {
    let d = lint_with("FROM a\nMAINTAINER Jane <j@x>\n", &LintOptions::default());
    assert_eq!(
        d[0].message,
        "Maintainer instruction is deprecated in favor of using label"
    );
    assert_eq!(
        d[0].hint.as_deref(),
        Some("write `LABEL org.opencontainers.image.authors=\"Jane <j@x>\"`")
    );
}

#[test]
fn undefined_arg_in_from_with_suggestion() {
    let text = "ARG VERSION=1\nFROM alpine:${VERSIN}\n";
    assert_eq!(
        check(text),
        [
            (
                "InvalidDefaultArgInFrom".into(),
                "Default value for ARG alpine:${VERSIN} results in empty or invalid base image name"
                    .into()
            ),
            (
                "UndefinedArgInFrom".into(),
                "FROM argument 'VERSIN' is not declared (did you mean VERSION?)".into()
            ),
        ]
    );
    assert_eq!(spans(text), ["alpine:${VERSIN}", "${VERSIN}"]);
    assert_eq!(rules("FROM al${PINE:-pine}\n"), ["UndefinedArgInFrom"]);
    // Declared without a value, or predefined: fine.
    assert!(check("ARG V\nFROM alpine:${V:-3}\n").is_empty());
    assert!(check("FROM --platform=$BUILDPLATFORM alpine:$TARGETARCH\n").is_empty());
    assert_eq!(
        rules("FROM --platform=$PLAT alpine\n"),
        ["UndefinedArgInFrom"]
    );
}

#[test]
fn invalid_default_arg_in_from() {
    let text = "ARG TAG\nFROM busybox:${TAG}\n";
    assert_eq!(
        check(text),
        [(
            "InvalidDefaultArgInFrom".into(),
            "Default value for ARG busybox:${TAG} results in empty or invalid base image name"
                .into()
        )]
    );
    assert!(check("ARG TAG=1\nFROM busybox:${TAG}\n").is_empty());
    // Build args do not silence it: it checks the defaults.
    let opts = LintOptions {
        build_args: [("TAG".to_string(), "1".to_string())].into(),
        ..LintOptions::default()
    };
    assert_eq!(pairs(&lint_with(text, &opts)).len(), 1);
}

#[test]
fn reference_validation() {
    for ok in [
        "alpine",
        "alpine:3.20",
        "docker.io/library/alpine:latest",
        "localhost:5000/a/b_c__d-e.f:t",
        "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "[::1]:5000/x",
        "scratch",
    ] {
        assert!(valid_reference(ok), "{ok}");
    }
    for bad in [
        "",
        "busybox:",
        "Alpine",
        "a//b",
        "a:b:c",
        "-a",
        "a@sha256:xyz",
        ":tag",
    ] {
        assert!(!valid_reference(bad), "{bad}");
    }
}

#[test]
fn workdir_relative_path_first_only() {
    let text = "FROM a\nWORKDIR app\nWORKDIR sub\n";
    assert_eq!(
        check(text),
        [(
            "WorkdirRelativePath".into(),
            "Relative workdir \"app\" can have unexpected results if the base image changes".into()
        )]
    );
    assert!(check("FROM a\nWORKDIR /app\nWORKDIR sub\n").is_empty());
    assert!(check("FROM a AS b\nWORKDIR /app\nFROM b\nWORKDIR sub\n").is_empty());
    // A variable the base image may define: unknown, no warning.
    assert!(check("FROM a\nWORKDIR $APP_HOME\n").is_empty());
    assert_eq!(
        rules("FROM scratch\nENV D=rel\nWORKDIR $D\n"),
        ["WorkdirRelativePath"]
    );
}

#[test]
fn undefined_var_only_with_known_env() {
    let text = "FROM scratch\nENV FOO=1\nCOPY $FOOO /x\nRUN echo $NOPE\n";
    assert_eq!(
        check(text),
        [(
            "UndefinedVar".into(),
            "Usage of undefined variable '$FOOO' (did you mean $FOO?)".into()
        )]
    );
    assert_eq!(spans(text), ["$FOOO"]);
    // `scratch` through a meta arg counts too.
    assert_eq!(rules("ARG B=scratch\nFROM $B\nUSER $U\n"), ["UndefinedVar"]);
    // External base image: its env is unknown.
    assert!(check("FROM alpine\nCOPY $X /x\n").is_empty());
    // Through a scratch parent stage, declared ARGs and PATH count as defined.
    let text = "FROM scratch AS a\nARG V\nFROM a\nENV P=$PATH:$V\nLABEL x=${WIDTH}\n";
    assert_eq!(
        check(text),
        [(
            "UndefinedVar".into(),
            "Usage of undefined variable '$WIDTH'".into()
        )]
    );
    // ARG defaults are checked; meta args are not visible unless redeclared.
    assert_eq!(
        check("ARG M=1\nFROM scratch\nARG A=$M\nARG M\nENV B=$M\n"),
        [(
            "UndefinedVar".into(),
            "Usage of undefined variable '$M'".into()
        )]
    );
}

#[test]
fn multiple_instructions_disallowed_points_at_earlier() {
    let text = "FROM a\nCMD [\"a\"]\nHEALTHCHECK NONE\nCMD [\"b\"]\nFROM a\nCMD [\"c\"]\n";
    let d = lint_with(text, &LintOptions::default());
    assert_eq!(
        pairs(&d),
        [(
            "MultipleInstructionsDisallowed".into(),
            "Multiple CMD instructions should not be used in the same stage because only the last one will be used".into()
        )]
    );
    assert_eq!(d[0].location.as_ref().unwrap().span.start.line, 2);
}

#[test]
fn legacy_key_value_format() {
    let text = "FROM a\nENV PATH_X /usr/bin\nLABEL k v w\nENV ok=1\n";
    let d = lint_with(text, &LintOptions::default());
    assert_eq!(
        pairs(&d),
        [
            (
                "LegacyKeyValueFormat".into(),
                "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format"
                    .into()
            ),
            (
                "LegacyKeyValueFormat".into(),
                "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format"
                    .into()
            ),
        ]
    );
    assert_eq!(d[1].hint.as_deref(), Some("write `LABEL k=\"v w\"`"));
}

#[test]
fn redundant_target_platform_and_const_platform() {
    assert_eq!(
        check("FROM --platform=$TARGETPLATFORM a\n"),
        [(
            "RedundantTargetPlatform".into(),
            "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior".into()
        )]
    );
    assert_eq!(
        spans("FROM --platform=${TARGETPLATFORM} a\n"),
        ["--platform=${TARGETPLATFORM}"]
    );
    assert_eq!(
        check("FROM --platform=linux/amd64 a\n"),
        [(
            "FromPlatformFlagConstDisallowed".into(),
            "FROM --platform flag should not use constant value \"linux/amd64\"".into()
        )]
    );
    assert!(check("FROM --platform=linux/amd64 a AS build-amd64\n").is_empty());
    assert!(check("FROM --platform=$BUILDPLATFORM a\n").is_empty());
}

#[test]
fn secrets_used_in_arg_or_env() {
    let got = check(
        "FROM a\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x\nENV PUBLIC_KEY=y AUTHOR=z MY_SECRET_FILE=/f\n",
    );
    assert_eq!(
        got,
        [
            (
                "SecretsUsedInArgOrEnv".into(),
                "Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\")"
                    .into()
            ),
            (
                "SecretsUsedInArgOrEnv".into(),
                "Do not use ARG or ENV instructions for sensitive data (ENV \"DB_PASSWORD\")"
                    .into()
            ),
            (
                "SecretsUsedInArgOrEnv".into(),
                "Do not use ARG or ENV instructions for sensitive data (ENV \"MY_SECRET_FILE\")"
                    .into()
            ),
        ]
    );
    assert!(is_secret_name("apikey") && is_secret_name("aws_Secret_Key"));
    assert!(
        !is_secret_name("KEYS") && !is_secret_name("public_token") && !is_secret_name("MONKEY")
    );
}

#[test]
fn copy_ignored_file_with_matcher_only() {
    let text = "FROM a\nCOPY ./secret.txt app/ /dst/\nADD https://x/secret.txt /\nCOPY --from=b secret.txt /\n";
    assert!(check(text).is_empty());
    let m = PatternMatcher::new(&["secret.txt"]).unwrap();
    let opts = LintOptions {
        ignore: Some(&m),
        ..LintOptions::default()
    };
    let d = lint_with(text, &opts);
    assert_eq!(
        pairs(&d),
        [(
            "CopyIgnoredFile".into(),
            "Attempting to Copy file \"./secret.txt\" that is excluded by .dockerignore".into()
        )]
    );
    assert_eq!(context_path("./a/../b/"), Some("b".into()));
    assert_eq!(context_path("."), None);
}

#[test]
fn expose_rules() {
    let text = "FROM a\nEXPOSE 80/TCP 127.0.0.1:80:80 8080:80/udp 443\n";
    assert_eq!(
        check(text),
        [
            (
                "ExposeProtoCasing".into(),
                "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase".into()
            ),
            (
                "ExposeInvalidFormat".into(),
                "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'".into()
            ),
            (
                "ExposeInvalidFormat".into(),
                "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80/udp'".into()
            ),
        ]
    );
    assert_eq!(spans(text), ["80/TCP", "127.0.0.1:80:80", "8080:80/udp"]);
    assert_eq!(
        rules("FROM a\nARG P=80/UDP\nEXPOSE $P\n"),
        ["ExposeProtoCasing"]
    );
}

#[test]
fn empty_continuation_passes_through() {
    let d = lint_with("FROM a\nRUN echo \\\n\n  hi\n", &LintOptions::default());
    assert_eq!(
        pairs(&d),
        [(
            "NoEmptyContinuation".into(),
            "Empty continuation line".into()
        )]
    );
}

#[test]
fn check_skip_and_enforce() {
    let text = "# check=skip=JSONArgsRecommended,FromAsCasing\nFROM a as b\nCMD x\nMAINTAINER m\n";
    let df = crate::parse("Dockerfile", text).unwrap();
    let w = lint(
        &df,
        &Source::new("Dockerfile", text),
        &LintOptions::default(),
    );
    assert_eq!(pairs(&w).len(), 1);
    assert!(enforce(&df, &w).is_ok(), "error=false");
    assert!(check("# check=skip=all\nfrom a AS B\nCMD x\n").is_empty());

    let text = "# check=error=true\nFROM a\nCMD x\nMAINTAINER m\n";
    let df = crate::parse("Dockerfile", text).unwrap();
    let w = lint(
        &df,
        &Source::new("Dockerfile", text),
        &LintOptions::default(),
    );
    let err = enforce(&df, &w).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Check);
    assert_eq!(
        err.message(),
        "lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated"
    );
    assert_eq!(err.location().unwrap().span.start.line, 3);
    assert!(enforce(&df, &[]).is_ok());
}

#[test]
fn target_limits_build_time_checks() {
    let text = "FROM a AS one\nCMD x\nFROM a AS two\nCMD y\nFROM a AS dep\nWORKDIR rel\nFROM a AS three\nCOPY --from=dep /a /a\n";
    let only = |target: &str| {
        let opts = LintOptions {
            target: Some(target.to_string()),
            ..LintOptions::default()
        };
        pairs(&lint_with(text, &opts))
            .into_iter()
            .map(|(r, _)| r)
            .collect::<Vec<_>>()
    };
    assert_eq!(only("two"), ["JSONArgsRecommended"]);
    assert_eq!(only("three"), ["WorkdirRelativePath"]);
    assert_eq!(rules(text).len(), 3);
}

#[test]
fn sorted_by_position_and_urls() {
    let d = lint_with(
        "FROM a\nCMD x\nMAINTAINER m\nFROM a as b\n",
        &LintOptions::default(),
    );
    let lines: Vec<usize> = d
        .iter()
        .map(|d| d.location.as_ref().unwrap().span.start.line)
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert_eq!(
        rule_url("JSONArgsRecommended").as_deref(),
        Some("https://docs.docker.com/go/dockerfile/rule/json-args-recommended/")
    );
    assert_eq!(
        rule_url("UndefinedArgInFrom").as_deref(),
        Some("https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/")
    );
    assert_eq!(rule_url("Nope"), None);
}

#[test]
fn suggestions_like_buildkit() {
    assert_eq!(
        suggest("FOOO", &["FOO", "BAR"], true).as_deref(),
        Some("FOO")
    );
    assert_eq!(suggest("FOO", &["FOO", "FOOO"], true), None);
    assert_eq!(suggest("ABCDEF", &["XYZ"], true), None);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
}

#[test]
fn odd_input_never_panics() {
    for text in [
        "FROM\u{a0}a\u{3000}AS\u{a0}Build\n",
        "FROM a AS b\nCOPY ${X:-\u{e9}} ${\u{e9}}\nENV \u{e9}=1\n",
        "ARG A=${\nFROM $A\n",
        "FROM --platform=${P:?} a\nEXPOSE ${Q:?x}\nWORKDIR ${W:?}\n",
        "# escape=`\nFROM a `\n  AS `\n  B\nCMD x\n",
        "FROM scratch\nCOPY <<EOF /a\n$UNDEF \"quote\n EOF\nEOF\n",
    ] {
        let Ok(df) = crate::parse("Dockerfile", text) else {
            continue;
        };
        let m = PatternMatcher::new(&["*"]).unwrap();
        let opts = LintOptions {
            ignore: Some(&m),
            target: Some("b".into()),
            ..LintOptions::default()
        };
        for d in lint(&df, &Source::new("Dockerfile", text), &opts) {
            let _ = d.render();
        }
    }
    let text = "FROM\u{a0}a\u{3000}AS\u{a0}Build\n";
    if let Ok(df) = crate::parse("Dockerfile", text) {
        let _ = lint(
            &df,
            &Source::new("Dockerfile", text),
            &LintOptions::default(),
        );
    }
}

#[test]
fn heredoc_with_expansion_is_checked() {
    let text = "FROM scratch\nCOPY <<EOF /a\nvalue: $UNDEF\nEOF\nCOPY <<'EOF' /b\n$RAW\nEOF\n";
    assert_eq!(
        check(text),
        [(
            "UndefinedVar".into(),
            "Usage of undefined variable '$UNDEF'".into()
        )]
    );
}
