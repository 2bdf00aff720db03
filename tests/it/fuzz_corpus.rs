//! The fuzz corpus as regression tests: every input kept under `fuzz/corpus/<target>/` (the
//! interesting inputs the fuzzers found, minimized, and the crashes fixed since) goes through the
//! same target body as under `cargo fuzz` (`fuzz/harness.rs`), in the normal suite: no panic, and
//! each input handled in bounded time.

use std::time::{Duration, Instant};

#[path = "../../fuzz/harness.rs"]
mod harness;

/// Generous for a debug build on a shared machine; a hang or a blow-up takes far longer.
const PER_INPUT: Duration = Duration::from_secs(5);

#[test]
fn every_corpus_input_runs_without_panic_in_bounded_time() {
    let root = crate::common::repo().join("fuzz/corpus");
    for (name, body) in harness::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no corpus for {name}");
        assert!(files.len() <= 64, "{name}: keep the corpus small (cmin)");
        for f in files {
            let data = std::fs::read(&f).unwrap();
            assert!(
                data.len() <= 64 * 1024,
                "{}: keep inputs small",
                f.display()
            );
            let start = Instant::now();
            body(&data);
            let took = start.elapsed();
            assert!(took < PER_INPUT, "{}: took {took:?}", f.display());
        }
    }
}

/// Each target directory of the corpus has a target, and each target a corpus.
#[test]
fn corpus_directories_match_the_targets() {
    let root = crate::common::repo().join("fuzz/corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut targets: Vec<String> = harness::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    targets.sort();
    assert_eq!(dirs, targets);
}
