//! Any bytes: decoding, the raw parser, the typed layer and the error renderer must
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match rbuild_parser::decode("Dockerfile", data) {
        Ok(text) => match rbuild_parser::parse("Dockerfile", &text) {
            Ok(df) => {
                let _ = serde_json_len(&df);
            }
            Err(e) => {
                let _ = e.render();
            }
        },
        Err(e) => {
            let _ = e.render();
        }
    }
});

fn serde_json_len(df: &rbuild_parser::Dockerfile) -> usize {
    format!("{df:?}").len()
}
