//! 261 real-world Dockerfiles: every one parses and validates with no error.

use crate::realworld_files;

#[test]
fn every_realworld_dockerfile_parses() {
    let files = realworld_files();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let result = rbuild_parser::decode(&name, &bytes)
            .and_then(|text| rbuild_parser::parse(&name, &text));
        if let Err(e) = result {
            failures.push(e.render());
        }
    }
    println!(
        "{} of {} real-world Dockerfiles parse",
        files.len() - failures.len(),
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
