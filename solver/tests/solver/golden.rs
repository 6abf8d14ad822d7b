//! Golden files: `testdata/solver/<case>/Dockerfile`, optional `build-args` (`K=V`
//! lines) and `target`; `expected-config.json` is the target image's config and history
//! as BuildKit writes them, `expected-graph.txt` the lowered op DAG.

use rbuild_solver::BuildOptions;

use crate::{FakeWorker, compare_or_bless, testdata};

#[tokio::test]
async fn config_and_graph_golden_files() {
    let root = testdata().join("solver");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "golden cases missing in {}",
        root.display()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let mut opts = BuildOptions::default();
        if let Ok(lines) = std::fs::read_to_string(dir.join("build-args")) {
            for line in lines.lines().filter(|l| !l.trim().is_empty()) {
                let (k, v) = line.split_once('=').unwrap();
                opts.build_args.insert(k.to_string(), v.to_string());
            }
        }
        if let Ok(t) = std::fs::read_to_string(dir.join("target")) {
            opts.target = Some(t.trim().to_string());
        }
        let worker = FakeWorker::new();
        let df = rbuild_parser::parse("Dockerfile", &text).unwrap();
        let graph = match rbuild_solver::lower(&df, &opts, &worker).await {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{}: {}", dir.display(), e.render()));
                continue;
            }
        };
        let image = &graph.target_stage().unwrap().image;
        let json = serde_json::to_string_pretty(image).unwrap() + "\n";
        compare_or_bless(&dir.join("expected-config.json"), &json, &mut failures);
        compare_or_bless(
            &dir.join("expected-graph.txt"),
            &graph.dump(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
