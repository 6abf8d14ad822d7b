//! 261 real-world Dockerfiles: every one parses and validates with no error.

use crate::corpora;

#[test]
fn every_realworld_dockerfile_parses() {
    let dir = corpora().join("realworld");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "MANIFEST.tsv"))
        .collect();
    files.sort();
    assert!(files.len() >= 261, "corpus missing: {} files", files.len());
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
