//! `bisect-run` as `git bisect run`'s predicate: a toy repository whose history plants a leak at
//! a known commit (its server script launches the reference server with the knobs of a file in
//! the repository), and a real `git bisect run` must land on that commit.

use std::path::Path;
use std::process::{Command, Output};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_sglang-memtest")
}

fn git(repo: &Path, args: &[&str]) -> Output {
    let o = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "memtest")
        .env("GIT_AUTHOR_EMAIL", "memtest@example.invalid")
        .env("GIT_COMMITTER_NAME", "memtest")
        .env("GIT_COMMITTER_EMAIL", "memtest@example.invalid")
        .output()
        .expect("git runs (install git)");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn commit(repo: &Path, file: &str, content: &str, message: &str) -> String {
    std::fs::write(repo.join(file), content).expect("write");
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", message]);
    String::from_utf8_lossy(&git(repo, &["rev-parse", "HEAD"]).stdout)
        .trim()
        .to_owned()
}

/// The predicate's arguments: the toy server through `--server-cmd`, fast settings.
fn predicate(out: &Path) -> Vec<String> {
    [
        "bisect-run",
        "--server-cmd",
        "sh server.sh {port}",
        "--num-requests",
        "40",
        "--request-interval",
        "0.01",
        "--sample-interval",
        "0.05",
        "--gpu",
        "off",
        "--no-plot",
        "--startup-timeout",
        "30",
        "--out-dir",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([out.display().to_string()])
    .collect()
}

#[test]
fn git_bisect_run_with_the_predicate_lands_on_the_commit_that_planted_the_leak() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("toy");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("server.sh"),
        "exec \"$MEMTEST_TOY_REFERENCE\" serve-reference --port \"$1\" $(cat knobs.conf)\n",
    )
    .expect("write");
    let good = commit(&repo, "knobs.conf", "--children=1\n", "a clean toy server");
    commit(&repo, "README", "toy\n", "docs");
    commit(&repo, "README", "toy server\n", "more docs");
    let planted = commit(
        &repo,
        "knobs.conf",
        "--children=1 --leak-in-child --leak-bytes-per-request=1048576\n",
        "keep every request's state in the scheduler",
    );
    commit(&repo, "README", "toy server, leaking\n", "docs again");
    commit(&repo, "NOTES", "n\n", "notes");
    let bad = commit(&repo, "README", "toy\n\n", "last");

    git(&repo, &["bisect", "start", &bad, &good]);
    let out = tmp.path().join("out");
    let o = Command::new("git")
        .current_dir(&repo)
        .env("MEMTEST_TOY_REFERENCE", exe())
        .env("MEMTEST_LOG", "warn")
        .args(["bisect", "run", exe()])
        .args(predicate(&out))
        .output()
        .expect("git bisect run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "git bisect run failed: {text}");
    assert!(
        text.contains(&format!("{planted} is the first bad commit")),
        "bisect should land on {planted}: {text}"
    );
}

#[test]
fn bisect_run_skips_a_commit_it_cannot_test_and_stops_on_bad_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A server that exits at once: this commit cannot be tested.
    std::fs::write(tmp.path().join("server.sh"), "exit 3\n").expect("write");
    let o = Command::new(exe())
        .current_dir(tmp.path())
        .args(predicate(&tmp.path().join("out")))
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(exe())
        .args(["bisect-run", "--num-requests", "1"])
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(128),
        "a bad value stops the bisection"
    );
    let o = Command::new(exe())
        .args(["bisect-run", "--no-such-flag"])
        .output()
        .expect("runs");
    assert_eq!(
        o.status.code(),
        Some(128),
        "an unknown flag stops the bisection"
    );
}
