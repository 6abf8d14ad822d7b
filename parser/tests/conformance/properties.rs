//! Properties over generated Dockerfiles: parsing never panics, errors always render
//! with a location inside the file, and the raw and typed layers agree on what they accept.

use proptest::prelude::*;
use rbuild_parser::{Source, raw};

/// Lines built from Dockerfile-ish pieces, so generated input reaches deep into the parser.
fn dockerfile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("FROM busybox AS b\n".to_string()),
        Just("RUN echo hi \\\n".to_string()),
        Just("RUN <<EOF\n".to_string()),
        Just("EOF\n".to_string()),
        Just("COPY --from=b --chmod=0755 a /b\n".to_string()),
        Just("ENV A=1 B=\"x y\"\n".to_string()),
        Just("# escape=`\n".to_string()),
        Just("CMD [\"a\", \"b\"]\n".to_string()),
        Just("\n".to_string()),
        Just("  # comment\n".to_string()),
        Just("ONBUILD RUN x\n".to_string()),
        Just("HEALTHCHECK --interval=1s CMD true\n".to_string()),
        Just("RUN --mount=type=cache,target=/x true\n".to_string()),
        "[ -~\t\\\\`\"'$\\[\\]{}<>=]{0,30}\n",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_errors_are_located(text in dockerfile()) {
        let len = text.len();
        match rbuild_parser::parse("Dockerfile", &text) {
            Ok(df) => {
                for stage in &df.stages {
                    prop_assert!(stage.span.start.offset <= len);
                }
            }
            Err(e) => {
                let rendered = e.render();
                prop_assert!(rendered.starts_with("error"));
                if let Some(loc) = e.location() {
                    prop_assert!(loc.span.start.offset <= len);
                    prop_assert!(loc.span.start.line >= 1);
                }
            }
        }
    }

    #[test]
    fn typed_layer_accepts_only_what_raw_accepts(text in dockerfile()) {
        let raw_ok = raw::parse(&Source::new("Dockerfile", text.as_str())).is_ok();
        if rbuild_parser::parse("Dockerfile", &text).is_ok() {
            prop_assert!(raw_ok);
        }
    }
}
