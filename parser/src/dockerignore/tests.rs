#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use proptest::prelude::*;

/// patternmatcher_test.go's TestMatches and Go's filepath.Match table (as TestMatch runs
/// it), then cases of our own: top level only, parents, `.`, `*`, regexp quirks.
#[rustfmt::skip]
const SINGLE: &[(&str, &str, bool)] = &[
    ("**", "file", true), ("**", "file/", true), ("**/", "file", true), ("**/", "file/", true),
    ("**", "/", true), ("**/", "/", true), ("**", "dir/file", true), ("**/", "dir/file", true),
    ("**", "dir/file/", true), ("**/", "dir/file/", true), ("**/**", "dir/file", true),
    ("**/**", "dir/file/", true), ("dir/**", "dir/file", true), ("dir/**", "dir/file/", true),
    ("dir/**", "dir/dir2/file", true), ("dir/**", "dir/dir2/file/", true), ("**/dir", "dir", true),
    ("**/dir", "dir/file", true), ("**/dir2/*", "dir/dir2/file", true),
    ("**/dir2/*", "dir/dir2/file/", true), ("**/dir2/**", "dir/dir2/dir3/file", true),
    ("**/dir2/**", "dir/dir2/dir3/file/", true), ("**file", "file", true), ("**file", "dir/file", true),
    ("**/file", "dir/file", true), ("**file", "dir/dir/file", true), ("**/file", "dir/dir/file", true),
    ("**/file*", "dir/dir/file", true), ("**/file*", "dir/dir/file.txt", true),
    ("**/file*txt", "dir/dir/file.txt", true), ("**/file*.txt", "dir/dir/file.txt", true),
    ("**/file*.txt*", "dir/dir/file.txt", true), ("**/**/*.txt", "dir/dir/file.txt", true),
    ("**/**/*.txt2", "dir/dir/file.txt", false), ("**/*.txt", "file.txt", true),
    ("**/**/*.txt", "file.txt", true), ("a**/*.txt", "a/file.txt", true),
    ("a**/*.txt", "a/dir/file.txt", true), ("a**/*.txt", "a/dir/dir/file.txt", true),
    ("a/*.txt", "a/dir/file.txt", false), ("a/*.txt", "a/file.txt", true),
    ("a/*.txt**", "a/file.txt", true), ("a[b-d]e", "ae", false), ("a[b-d]e", "ace", true),
    ("a[b-d]e", "aae", false), ("a[^b-d]e", "aze", true), (".*", ".foo", true), (".*", "foo", false),
    ("abc.def", "abcdef", false), ("abc.def", "abc.def", true), ("abc.def", "abcZdef", false),
    ("abc?def", "abcZdef", true), ("abc?def", "abcdef", false), ("a\\\\", "a\\", true),
    ("**/foo/bar", "foo/bar", true), ("**/foo/bar", "dir/foo/bar", true),
    ("**/foo/bar", "dir/dir2/foo/bar", true), ("abc/**", "abc", false), ("abc/**", "abc/def", true),
    ("abc/**", "abc/def/ghi", true), ("**/.foo", ".foo", true), ("**/.foo", "bar.foo", false),
    ("a(b)c/def", "a(b)c/def", true), ("a(b)c/def", "a(b)c/xyz", false),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", true), ("a\\*b", "a*b", true),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
    ("abc", "abc", true), ("*", "abc", true), ("*c", "abc", true), ("a*", "a", true),
    ("a*", "ab/c", true), ("a*/b", "abc/b", true), ("a*/b", "a/c/b", false),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", true), ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
    ("a*b?c*x", "abxbbxdbxebxczzx", true), ("a*b?c*x", "abxbbxdbxebxczzy", false),
    ("ab[^c]", "abc", false), ("ab[^e-g]", "abc", true), ("a\\*b", "ab", false), ("a?b", "a☺b", true),
    ("a[^a]b", "a☺b", true), ("a???b", "a☺b", false), ("[a-ζ]*", "α", true), ("*[a-ζ]", "A", false),
    ("a?b", "a/b", false), ("a*b", "a/b", false), ("[\\]a]", "]", true), ("[\\-]", "-", true),
    ("[x\\-]", "-", true), ("[x\\-]", "z", false), ("[\\-x]", "x", true), ("*x", "xxx", true),
    ("*.md", "README.md", true), ("*.md", "docs/README.md", false), ("**/*.md", "docs/a/R.md", true),
    ("docs", "docs/a/b.txt", true), ("docs/", "docs/a", true), ("./docs", "docs/a", true),
    (".", "a", false), ("*", "a/b/c", true), ("**file", "dir/myfile", true), ("[*]", "*", false),
    ("[*]", "]", true), ("[?]", "^]", true), ("a\\Qb*", "ab[^/]*$", true), ("\\d*", "42", true),
    ("[[:digit:]]x", "7x", true), ("[[:^digit:]]", "x", true), ("[\\d]", "5", true),
    ("\\.git", ".git/HEAD", true), ("*^a", "a", true), ("**/x\\n", "x\n", true),
    ("**/*.go", "a\nb/c.go", false), ("\\bx*", "xy", true), ("a\\Bb", "ab", true),
    ("\\101", "A", true), ("\\x41*", "Ab", true), ("[a-c]/**", "b/x", true),
];

#[rustfmt::skip]
const MULTI: &[(&[&str], &str, bool)] = &[
    (&["**", "!util/docker/web"], "util/docker/web/foo", false),
    (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
    (&["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false),
    (&["!fileutils.go", "*.go"], "fileutils.go", true), (&["*.go", "!fileutils.go"], "fileutils.go", false),
    (&["docs", "!docs/README.md"], "docs/README.md", false),
    (&["docs/", "!docs/README.md"], "docs/README.md", false),
    (&["docs/*", "!docs/README.md"], "docs/README.md", false),
    (&["docs/*", "!docs/README.md"], "docs/other.md", true),
    (&["*", "!src", "src/**/*.test.js"], "src/a/b.test.js", true),
    (&["*", "!src", "src/**/*.test.js"], "src/a/b.js", false), (&["  !x  "], "x", false), (&[], "x", false),
];

/// Walks `path` parent-first with `matches_using_parent[_buildkit]`; the result for `path`.
fn walk(m: &PatternMatcher, path: &str, buildkit: bool) -> bool {
    let (mut result, mut info) = (false, MatchInfo::default());
    let ends = path.match_indices('/').map(|(i, _)| i).chain([path.len()]);
    for end in ends.filter(|&e| e > 0) {
        let step = if buildkit {
            PatternMatcher::matches_using_parent_buildkit
        } else {
            PatternMatcher::matches_using_parent
        };
        (result, info) = step(m, &path[..end], info);
    }
    result
}

#[test]
fn patternmatcher_tables() {
    let single = SINGLE
        .iter()
        .map(|(pattern, path, want)| (std::slice::from_ref(pattern), path, want));
    for (patterns, path, &want) in
        single.chain(MULTI.iter().map(|(p, path, want)| (*p, path, want)))
    {
        let m = PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        let case = format!("{patterns:?} {path:?}");
        assert_eq!(m.matches(path), want, "matches {case}");
        assert_eq!(walk(&m, path, false), want, "walk {case}");
        assert_eq!(walk(&m, path, true), want, "buildkit walk {case}");
        let no_context = m.matches_using_parent_buildkit(path, MatchInfo::default());
        assert_eq!(no_context.0, want, "no context {case}");
    }
    assert!(SINGLE.len() + MULTI.len() > 120);
}

#[test]
fn buildkit_walk_differs_from_parent_matching() {
    let m = PatternMatcher::new(&["a/b", "!a"]).unwrap();
    assert!(!m.matches("a/b") && !walk(&m, "a/b", false) && walk(&m, "a/b", true));
    let m = PatternMatcher::new(&["a", "!a/b", "a"]).unwrap();
    assert!(m.matches("a/b") && walk(&m, "a/b", false) && !walk(&m, "a/b", true));
}

#[test]
fn many_patterns_fall_back() {
    let mut patterns: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    patterns.extend(["deep", "!deep/keep", "deep/keep/x"].map(String::from));
    let m = PatternMatcher::new(&patterns).unwrap();
    for path in [
        "deep/a",
        "deep/keep",
        "deep/keep/x/y",
        "deep/keep/z",
        "p299/q",
        "p300",
    ] {
        assert_eq!(walk(&m, path, false), m.matches(path), "{path}");
        assert_eq!(walk(&m, path, true), m.matches(path), "{path}");
    }
    assert!(m.matches("deep/keep/x/y") && !m.matches("deep/keep/z") && m.matches("p299/q"));
}

#[test]
fn invalid_patterns() {
    #[rustfmt::skip]
    let bad = [
        "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "\\", "a\\", "[a-b-c]", "!", " ! ",
        "!/", "[z-a]", "\\q", "\\1", "\\pL", "[[:nope:]]", "[a-**]", "\\é", "\\x4",
    ];
    for pattern in bad {
        let err = PatternMatcher::new(&["ok", pattern]).expect_err(pattern);
        assert!(err.to_string().contains("pattern"), "{pattern}: {err}");
    }
    let err = PatternMatcher::new(&["[abc"]).unwrap_err();
    assert!(matches!(&err, IgnoreError::BadPattern { pattern, .. } if pattern == "[abc"));
}

#[test]
fn matcher_accessors_and_pruning() {
    let m = PatternMatcher::new(&["docs", "", "  ", "!docs/README.md  "]).unwrap();
    assert_eq!(m.patterns(), ["docs", "!docs/README.md  "]);
    assert!(m.has_exclusions() && m.could_reinclude_below("docs"));
    assert!(!m.could_reinclude_below("src") && !m.could_reinclude_below("doc"));
    let m = PatternMatcher::new(&["a"]).unwrap();
    assert!(!m.has_exclusions() && !m.could_reinclude_below("a"));
    assert!(
        PatternMatcher::new(&["a", "!*.md"])
            .unwrap()
            .could_reinclude_below("a")
    );
    let m = PatternMatcher::new(&["a", "!a/b/**"]).unwrap();
    assert!(m.could_reinclude_below("a") && m.could_reinclude_below("a/b"));
    assert!(!m.could_reinclude_below("c") && !m.could_reinclude_below("a/b/c"));
}

#[test]
fn helpers_follow_go() {
    #[rustfmt::skip]
    let cases = [
        ("", "."), ("a/../b", "b"), ("./x", "x"), ("/../x", "/x"), ("../x", "../x"), ("a//b/", "a/b"),
        ("/", "/"), ("a/..", "."), ("!a/../b", "b"), ("../../a/./b/..", "../../a"),
    ];
    for (input, want) in cases {
        assert_eq!(clean(input), want, "{input}");
    }
    assert_eq!(
        ancestors(&go_dir("a/b/c")).collect::<Vec<_>>(),
        ["a", "a/b"]
    );
    assert_eq!(ancestors(&go_dir("/a")).collect::<Vec<_>>(), ["", "/"]);
    assert_eq!(ancestors(&go_dir("a")).count(), 0);
}

#[test]
fn ignore_file_parsing() {
    let text = "\u{feff}test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n\
                ! /inverted/abs/path\n!\n! ";
    let want = [
        "test1",
        "test2",
        "a/file/here",
        "lastfile",
        "!inverted/abs/path",
        "!",
        "!",
    ];
    assert_eq!(parse_ignore_file(text), want);
    let text = "  # not a comment\r\n./x\na/../b\n/\n\t*.md \n!  ./keep/ \n\u{feff}y\nnm/\n..\nz\r";
    let want = [
        "# not a comment",
        "x",
        "b",
        "/",
        "*.md",
        "!keep",
        "\u{feff}y",
        "nm",
        "..",
        "z",
    ];
    assert_eq!(parse_ignore_file(text), want);
    assert!(parse_ignore_file("").is_empty() && parse_ignore_file("\n\n# c\n").is_empty());
}

#[test]
fn load_for_build_precedence() {
    let root = std::env::temp_dir().join(format!("rbuild-dockerignore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("docker")).unwrap();
    let (dockerfile, general) = (
        root.join("docker/app.Dockerfile"),
        root.join(".dockerignore"),
    );
    let specific = root.join("docker/app.Dockerfile.dockerignore");
    let load = || load_for_build(&root, &dockerfile);
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(load().unwrap(), (None, Vec::new()));
    std::fs::write(&general, "a\n!b\n").unwrap();
    assert_eq!(
        load().unwrap(),
        (Some(general.clone()), strings(&["a", "!b"]))
    );
    std::fs::write(&specific, "").unwrap();
    assert_eq!(load().unwrap(), (Some(specific.clone()), Vec::new()));
    std::fs::write(&specific, "# c\n/c/\n").unwrap();
    assert_eq!(load().unwrap(), (Some(specific.clone()), strings(&["c"])));
    std::fs::remove_file(&specific).unwrap();
    std::fs::create_dir(&specific).unwrap();
    assert_eq!(load().unwrap().0, Some(general.clone()));
    std::fs::write(&general, format!("ok\n{}\n", "x".repeat(MAX_LINE))).unwrap();
    let err = load().unwrap_err();
    assert!(
        matches!(&err, IgnoreError::LineTooLong { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(".dockerignore"));
    std::fs::remove_dir_all(&root).unwrap();
}

fn glob_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ab/*?\\[\\]^!\\\\.\\-:{}()$|+ QEdpx0\n]{0,12}").unwrap()
}

fn glob_path() -> impl Strategy<Value = String> {
    let parts = proptest::sample::select(&["a", "b", "ab", "ba", "a.b", "\\[", "]", "-", "*"][..]);
    proptest::collection::vec(parts, 1..5).prop_map(|parts| parts.join("/"))
}

proptest! {
    #[test]
    fn never_panics(
        patterns in proptest::collection::vec(prop_oneof![any::<String>(), glob_text()], 0..4),
        path in prop_oneof![any::<String>(), glob_text()],
    ) {
        if let Ok(m) = PatternMatcher::new(&patterns) {
            let (walked, _) = m.matches_using_parent(&path, MatchInfo::default());
            prop_assert_eq!(walked, m.matches(&path));
            let _ = (m.could_reinclude_below(&path), m.matches_using_parent_buildkit(&path, MatchInfo::default()));
        }
    }

    #[test]
    fn walking_agrees_with_matches(
        patterns in proptest::collection::vec(
            prop_oneof![glob_path(), glob_path().prop_map(|p| format!("!{p}")), glob_text()], 1..5),
        path in glob_path(),
    ) {
        if let Ok(m) = PatternMatcher::new(&patterns) {
            prop_assert_eq!(walk(&m, &path, false), m.matches(&path));
            if m.patterns().len() == 1 {
                prop_assert_eq!(walk(&m, &path, true), m.matches(&path));
            }
        }
    }
}
