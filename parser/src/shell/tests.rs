//! Unit tests of the shell lexer API; the data-driven BuildKit tables are in
//! `tests/shell_conformance.rs`.

use super::*;
use proptest::prelude::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn word(lex: &Lexer, input: &str, env: &dyn Env) -> String {
    lex.process_word(input, env)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

fn words(lex: &Lexer, input: &str, env: &dyn Env) -> Vec<String> {
    lex.process_words(input, env)
        .unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

/// BuildKit's `TestProcessWithMatches` table: input, env, expected (None: error),
/// matched, unmatched.
#[allow(clippy::type_complexity)]
const WITH_MATCHES: &[(&str, &[(&str, &str)], Option<&str>, &[&str], &[&str])] = &[
    ("x", &[("DUMMY", "dummy")], Some("x"), &[], &[]),
    (
        "x ${UNUSED}",
        &[("DUMMY", "dummy")],
        Some("x "),
        &[],
        &["UNUSED"],
    ),
    ("x ${FOO}", &[("FOO", "y")], Some("x y"), &["FOO"], &[]),
    (
        "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx  ccc"),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx bbb ccc"),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:-}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    ("${FOO:-}", &[], Some(""), &[], &["FOO"]),
    (
        "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa bbb "),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("aaa  "),
        &["FOO", "BAR"],
        &["BAZ"],
    ),
    (
        "${FOO?aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    (
        "${BAR?bbb}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some(""),
        &["BAR"],
        &[],
    ),
    ("${BAZ?ccc}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    (
        "${FOO:?aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        Some("xxx"),
        &["FOO"],
        &[],
    ),
    (
        "${BAR:?bbb}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    (
        "${BAZ:?ccc}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    ("${BAZ:?}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    ("${FOO=aaa}", &[("FOO", "xxx"), ("BAR", "")], None, &[], &[]),
    (
        "${FOO=:aaa}",
        &[("FOO", "xxx"), ("BAR", "")],
        None,
        &[],
        &[],
    ),
    ("${FOO=}", &[], None, &[], &[]),
    (
        "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
        &[("FOO", "()[]{}^$.*?|\\x")],
        Some("x"),
        &["FOO"],
        &[],
    ),
    (
        "${FOO%%\\**}",
        &[("FOO", "xx**")],
        Some("xx"),
        &["FOO"],
        &[],
    ),
    ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y"), &["FOO"], &[]),
    ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "x")],
        Some("xyy"),
        &["FOO", "BAR"],
        &[],
    ),
    (
        "${FOO#$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy"), &["FOO"], &[]),
    ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y"), &["FOO"], &[]),
    (
        "${ABC:-.}${FOO%x}${ABC:-.}",
        &[("FOO", "xxyy")],
        Some(".xxyy."),
        &["FOO"],
        &["ABC"],
    ),
    (
        "${FOO%%\\**\\*}",
        &[("FOO", "a***yy*")],
        Some("a"),
        &["FOO"],
        &[],
    ),
    ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    (
        "${FOO%%$BAR}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("xxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
        &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
        Some("/foo.*/*.txt - /foo..*.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
        &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
        Some("/tmp/bar.txt - /bar.txt"),
        &["FOO", "NEEDLE"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ],
        Some("/foo/b/c.txt - /foo/c.txt"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    (
        "${FOO/$NEEDLE/$REPLACEMENT}",
        &[
            ("FOO", "http://google.de"),
            ("NEEDLE", "http://"),
            ("REPLACEMENT", "https://"),
        ],
        Some("https://google.de"),
        &["FOO", "NEEDLE", "REPLACEMENT"],
        &[],
    ),
    (
        "${FOO//\\//\\/}",
        &[("FOO", "/tmp/foo.txt")],
        Some("\\/tmp\\/foo.txt"),
        &["FOO"],
        &[],
    ),
    (
        "${FOO/$BAR/ww}",
        &[("FOO", "xxyy"), ("BAR", "")],
        Some("wwxxyy"),
        &["FOO", "BAR"],
        &[],
    ),
    ("${FOO//ww}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO//}", &[("FOO", "xxyy")], None, &[], &[]),
    ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy"), &["FOO"], &[]),
    ("${FOO///}", &[], Some(""), &[], &["FOO"]),
];

#[test]
fn process_with_matches_table() {
    let lex = Lexer::new('\\');
    for (input, env, expected, matched, unmatched) in WITH_MATCHES {
        let got = lex.process_word_with_matches(input, &map(env));
        match expected {
            None => assert!(got.is_err(), "{input:?} should fail, got {got:?}"),
            Some(expected) => {
                let got = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                assert_eq!(got.result, *expected, "{input:?}");
                assert_eq!(got.matched, set(matched), "{input:?} matched");
                assert_eq!(got.unmatched, set(unmatched), "{input:?} unmatched");
            }
        }
    }
}

#[test]
fn platform_release_name() {
    let lex = Lexer::new('\\');
    let release =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let base = [("VERSION", "v1.2.3"), ("TARGETOS", "linux")];
    let with = |extra: &[(&str, &str)]| {
        let mut env = map(&base);
        env.extend(map(extra));
        lex.process_word_with_matches(release, &env).unwrap().result
    };
    assert_eq!(
        with(&[("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")]),
        "something-v1.2.3.linux-arm-v7.tar.gz"
    );
    assert_eq!(
        with(&[("TARGETARCH", "arm64"), ("TARGETVARIANT", "")]),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
    assert_eq!(
        with(&[("TARGETARCH", "arm64")]),
        "something-v1.2.3.linux-arm64.tar.gz"
    );
}

#[test]
fn mandatory_variables() {
    let lex = Lexer::new('\\');
    let envs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let set_envs = envs(&["VAR=plain", "ARG=x"]);
    let empty_envs = envs(&["VAR=", "ARG=x"]);
    let unset_envs = envs(&["ARG=x"]);
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";

    assert_eq!(word(&lex, no_empty, &EnvList(&set_envs)), "plain");
    for env in [&empty_envs, &unset_envs] {
        let err = lex.process_word(no_empty, &EnvList(env)).unwrap_err();
        assert_eq!(err.message, "VAR: message herex");
        assert_eq!(err.offset, 0);
    }
    assert_eq!(word(&lex, no_unset, &EnvList(&set_envs)), "plain");
    assert_eq!(word(&lex, no_unset, &EnvList(&empty_envs)), "");
    let err = lex
        .process_word(no_unset, &EnvList(&unset_envs))
        .unwrap_err();
    assert_eq!(err.message, "VAR: message herex");

    let err = lex.process_word("a${X?}", &NoEnv).unwrap_err();
    assert_eq!(err.message, "X: is not allowed to be unset");
    assert_eq!(err.offset, 1);
    let err = lex.process_word("${X:?}", &map(&[("X", "")])).unwrap_err();
    assert_eq!(err.message, "X: is not allowed to be empty");
    assert_eq!(
        err.buildkit_message("${X:?}"),
        "failed to process \"${X:?}\": X: is not allowed to be empty"
    );
}

#[test]
fn env_implementations() {
    let list: Vec<String> = ["foo=bar", "car=hat", "car=bike", "bare", "eq=a=b"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let env = EnvList(&list);
    assert_eq!(env.lookup("foo").as_deref(), Some("bar"));
    assert_eq!(env.lookup("car").as_deref(), Some("bike"));
    assert_eq!(env.lookup("bare").as_deref(), Some(""));
    assert_eq!(env.lookup("eq").as_deref(), Some("a=b"));
    assert_eq!(env.lookup("nope"), None);
    assert_eq!(env.keys(), ["foo", "car", "bare", "eq"]);

    let pairs = vec![
        ("a".to_owned(), "1".to_owned()),
        ("a".to_owned(), "2".to_owned()),
    ];
    assert_eq!(pairs.lookup("a").as_deref(), Some("2"));
    assert_eq!(pairs.as_slice().keys(), ["a"]);
    let slice: &[(String, String)] = &pairs;
    assert_eq!(word(&Lexer::default(), "$a", &slice), "2");
    assert_eq!(NoEnv.lookup("a"), None);
    assert_eq!(Env::keys(&map(&[("k", "v")])), ["k"]);
}

#[test]
fn words_split_on_expansions_not_quotes() {
    let lex = Lexer::new('\\');
    let env = map(&[("space", "abc  def"), ("empty", "")]);
    assert_eq!(
        words(&lex, "hello${space}bye", &env),
        ["helloabc", "defbye"]
    );
    assert_eq!(
        words(&lex, "hello \"${space}\"bye", &env),
        ["hello", "abc  defbye"]
    );
    assert_eq!(words(&lex, "a\\ b 'c d'", &env), ["a b", "c d"]);
    assert_eq!(words(&lex, "\"\" $empty x", &env), ["x"]);
    assert!(words(&lex, "  ", &env).is_empty());
    // process_word never splits.
    assert_eq!(word(&lex, "hello${space}bye", &env), "helloabc  defbye");
    // A quoted default is split anyway: the operand's quotes are gone by then.
    assert_eq!(words(&lex, "${X:-\"a b\"}", &env), ["a", "b"]);
}

#[test]
fn words_shared_buffer_quirk() {
    // BuildKit shares one buffer between a word and the operand of `${…}` forms, so the
    // part of the word before such a form is lost from the fields (not from the string).
    let lex = Lexer::new('\\');
    let env = map(&[("V", "v")]);
    let exp = lex.process_word_with_matches("a${X:-b}c d", &env).unwrap();
    assert_eq!(exp.result, "abc d");
    assert_eq!(exp.words, ["bc", "d"]);
    assert_eq!(words(&lex, "x y${V/v/w}z", &env), ["x", "wz"]);
    assert_eq!(words(&lex, "a${V}b", &env), ["avb"]);
    assert_eq!(words(&lex, "a\"${X:-b}\"c", &env), ["bc"]);
}

#[test]
fn escapes() {
    let lex = Lexer::new('\\');
    let env = map(&[("PWD", "/home")]);
    assert_eq!(word(&lex, "he\\$PWD", &env), "he$PWD");
    assert_eq!(word(&lex, "\"a\\x\\\"\\\\\\$\"", &env), "a\\x\"\\$");
    assert_eq!(word(&lex, "a\\", &env), "a");

    let tick = Lexer::new('`');
    assert_eq!(word(&tick, "a`$PWD b\\c", &env), "a$PWD b\\c");
    assert_eq!(word(&tick, "\"`\"`x\\\"", &env), "\"`x\\");
    assert_eq!(word(&tick, "C:\\path\\$PWD", &env), "C:\\path\\/home");
}

#[test]
fn raw_quotes_and_escapes_like_heredocs_from_line() {
    // heredocsFromLine: RawQuotes + RawEscapes, no variables.
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    assert_eq!(
        words(&lex, "cat <<\"EOF\" >out <<-'E2' a\\ b", &NoEnv),
        ["cat", "<<\"EOF\"", ">out", "<<-'E2'", "a\\ b"]
    );
    assert_eq!(words(&lex, "<<E\\OF", &NoEnv), ["<<E\\OF"]);
    assert_eq!(word(&lex, "\"a\\\"b\" 'c\\d'", &NoEnv), "\"a\\\"b\" 'c\\d'");
    // An escape that escapes nothing inside double quotes is doubled.
    assert_eq!(word(&lex, "\"\\x\"", &NoEnv), "\"\\\\x\"");
    // Trailing escape is kept.
    assert_eq!(word(&lex, "a\\", &NoEnv), "a\\");
    // Operands of `:-` process escapes; `#`, `%` and `/` keep them.
    assert_eq!(word(&lex, "${X:-a\\b}", &NoEnv), "ab");
    assert_eq!(word(&lex, "${X#a\\*}", &NoEnv), "");

    // Without raw escapes only the quotes stay.
    lex.raw_escapes = false;
    // (inside double quotes an escape before an ordinary character stays).
    assert_eq!(
        words(&lex, "<<\"E\\OF\" x\\y", &NoEnv),
        ["<<\"E\\OF\"", "xy"]
    );
}

#[test]
fn skip_unset_env_like_parse_heredoc() {
    // parseHeredoc: SkipUnsetEnv, once with RawQuotes off and once on.
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let quoted = ["\"EOF\"", "'EOF'", "E'O'F", "\"$EOF\""];
    let plain = ["EOF", "$EOF", "${EOF}", "E\\OF"];
    let count = |s: &str| s.chars().filter(|c| matches!(c, '"' | '\'')).count();
    for (input, is_quoted) in quoted
        .iter()
        .map(|q| (q, true))
        .chain(plain.iter().map(|p| (p, false)))
    {
        lex.raw_quotes = false;
        let cooked = words(&lex, input, &NoEnv);
        lex.raw_quotes = true;
        let raw = words(&lex, input, &NoEnv);
        assert_eq!((cooked.len(), raw.len()), (1, 1), "{input}");
        assert_eq!(
            count(&cooked[0]) != count(&raw[0]),
            is_quoted,
            "{input}: {cooked:?} {raw:?}"
        );
    }
    lex.raw_quotes = false;
    assert_eq!(word(&lex, "$EOF", &NoEnv), "$EOF");
    assert_eq!(word(&lex, "${EOF}", &NoEnv), "${EOF}");
    assert_eq!(word(&lex, "\"$EOF\"", &NoEnv), "$EOF");
    assert_eq!(word(&lex, "${A:-x y}", &NoEnv), "${A:-x y}");
    assert_eq!(word(&lex, "${A#x}", &NoEnv), "${A#x}");
    assert_eq!(word(&lex, "${A//x/y}", &NoEnv), "${A/x/y}");
    assert_eq!(word(&lex, "${A:=x}", &NoEnv), "${A:=x}");
    assert_eq!(word(&lex, "$1$@", &NoEnv), "$1$@");
    let set_env = map(&[("A", "a")]);
    assert_eq!(word(&lex, "$A${A}${A:-x}", &set_env), "aaa");
    assert!(lex.process_word("${A:=x}", &set_env).is_err());
    assert!(lex.process_word("${A:#x}", &NoEnv).is_err());
}

#[test]
fn skip_process_quotes() {
    let mut lex = Lexer::new('\\');
    lex.skip_process_quotes = true;
    let env = map(&[("V", "v")]);
    assert_eq!(word(&lex, "'$V' \"$V\"", &env), "'v' \"v\"");
    assert_eq!(words(&lex, "'a b'", &env), ["'a", "b'"]);
    assert_eq!(word(&lex, "'unterminated", &env), "'unterminated");
}

#[test]
fn error_messages_and_offsets() {
    let lex = Lexer::new('\\');
    let env = map(&[("V", "value")]);
    let cases: &[(&str, &str, usize)] = &[
        (
            "ab${V",
            "unsupported modifier (\u{fffd}) in substitution",
            5,
        ),
        ("ab${", "syntax error: missing '}'", 2),
        ("a${}", "syntax error: bad substitution", 1),
        ("a${:-x}", "syntax error: bad substitution", 1),
        ("${{V}", "syntax error: bad substitution", 0),
        ("x${V:=000}", "unsupported modifier (:=) in substitution", 4),
        ("${V=x}", "unsupported modifier (=) in substitution", 3),
        ("${V:#x}", "unsupported modifier (:#) in substitution", 3),
        ("${V:%x}", "unsupported modifier (:%) in substitution", 3),
        ("${V.}", "unsupported modifier (.) in substitution", 3),
        ("${V:-x", "syntax error: missing '}'", 0),
        ("${V/x", "syntax error: missing '/' in ${}", 0),
        ("${V/x/y", "syntax error: missing '}'", 0),
        ("${V:-${}}", "syntax error: bad substitution", 5),
        ("${V:-\"x}", "syntax error: missing '}'", 0),
        (
            "a'b",
            "unexpected end of statement while looking for matching single-quote",
            1,
        ),
        (
            "a\"b",
            "unexpected end of statement while looking for matching double-quote",
            1,
        ),
        (
            "${V#a\\x}",
            "invalid pattern (a\\x) in substitution: invalid escape '\\x'",
            0,
        ),
        (
            "${V%a\\x}",
            "invalid pattern (\\xa) in substitution: invalid escape '\\x'",
            0,
        ),
        (
            "${V/\\x/y}",
            "invalid pattern (\\x) in substitution: invalid escape '\\x'",
            0,
        ),
    ];
    for (input, message, offset) in cases {
        let err = lex.process_word(input, &env).unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.offset),
            (*message, *offset),
            "{input:?}"
        );
        assert_eq!(err.to_string(), *message);
    }
    // With no closing brace the modifier is read as U+FFFD, as Go does.
    assert_eq!(
        lex.process_word("${V:", &env).unwrap_err().message,
        "syntax error: missing '}'"
    );
    let err = lex.process_word("tab\there\"", &env).unwrap_err();
    assert_eq!(
        err.buildkit_message("tab\there\"\u{1}é"),
        "failed to process \"tab\\there\\\"\\x01é\": unexpected end of statement while looking for matching double-quote"
    );
}

#[test]
fn substitution_forms() {
    let lex = Lexer::new('\\');
    let env = map(&[
        ("F", "a.b.txt"),
        ("E", ""),
        ("P", "/usr/local/bin"),
        ("ML", "ab\ncd"),
    ]);
    let cases: &[(&str, &str)] = &[
        ("${F%.*}", "a.b"),
        ("${F%%.*}", "a"),
        ("${F#*.}", "b.txt"),
        ("${F##*.}", "txt"),
        ("${P##*/}", "bin"),
        ("${P%/*}", "/usr/local"),
        ("${F/./-}", "a-b.txt"),
        ("${F//./-}", "a-b-txt"),
        ("${F//[.]/-}", "a.b.txt"),
        ("${F//?/x}", "xxxxxxx"),
        ("${F//./'$$'}", "a$b$txt"),
        ("${F//./$$}", "abtxt"),
        ("${F//b/'$0'}", "a.b.txt"),
        ("${F//b/'<$0>'}", "a.<b>.txt"),
        ("${F/b/'<$0>'}", "a.<$0>.txt"),
        ("${E-d}|${E:-d}|${E+s}|${E:+s}", "|d|s|"),
        ("${ML%%c*}", "ab\n"),
        ("${ML##*}", "\ncd"),
        ("$V$", "$"),
        ("${F:-x}${F}", "a.b.txta.b.txt"),
        ("\u{feff}$F", "a.b.txt"),
        ("a\u{feff}", "a\u{feff}"),
        ("$F\u{2163}", "a.b.txt\u{2163}"),
        ("$F\u{0669}x", ""),
        ("$\u{0669}\u{0660}x", "x"),
    ];
    for (input, expected) in cases {
        assert_eq!(word(&lex, input, &env), *expected, "{input:?}");
    }
    let exp = lex
        .process_word_with_matches("$\u{0669}\u{0660}x $F\u{0669}x", &env)
        .unwrap();
    assert_eq!(exp.unmatched, set(&["\u{0669}\u{0660}", "F\u{0669}x"]));
}

fn lexers() -> impl Strategy<Value = Lexer> {
    (prop_oneof![Just('\\'), Just('`')], any::<[bool; 4]>()).prop_map(|(escape, f)| Lexer {
        escape,
        raw_quotes: f[0],
        raw_escapes: f[1],
        skip_process_quotes: f[2],
        skip_unset_env: f[3],
    })
}

/// Strings built from the characters that matter to the lexer, plus anything.
fn shellish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "*", "\\", "`", "'", "\"", " ",
                "\n", "=", "a", "V", "0", "1", "@", "${", "${V", "${U", "\u{feff}", "é", "한",
            ])
            .prop_map(str::to_owned),
            any::<char>().prop_map(String::from),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn never_panics(lex in lexers(), input in shellish(), any_input in ".*") {
        let env = map(&[("V", "va\nl ue*"), ("E", "")]);
        for s in [&input, &any_input] {
            let one = lex.process_word(s, &env);
            let many = lex.process_words(s, &env);
            let full = lex.process_word_with_matches(s, &env);
            prop_assert_eq!(one.is_ok(), many.is_ok());
            if let (Ok(one), Ok(full)) = (one, full) {
                prop_assert_eq!(one, full.result);
            }
            if let Err(e) = lex.process_word(s, &NoEnv) {
                prop_assert!(e.offset <= s.len());
                prop_assert!(s.is_char_boundary(e.offset));
            }
        }
    }
}
