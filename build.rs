//! Two things decided when the crate is compiled:
//!
//! - `IM_TEST_SKIP_SERVICES` becomes the `im_skip_services` cfg, which marks the tests that need
//!   PostgreSQL, Redis, Node.js, nginx or PostgreSQL's server binaries as ignored. libtest can
//!   only ignore a test at compile time, and an ignored test is counted in the run's summary,
//!   where a test that returns early would count as passed.
//! - The commit the binary is built from, `IM_SERVER_COMMIT` for `env!`: shown by `--version`,
//!   the start-up line, the page at `/` and `im_build_info` on `/metrics`, so an operator knows
//!   exactly what runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files and folders the binary is built from: a change among them marks a git build dirty.
/// Only these, so that editing a test or the README neither reruns this script nor rebuilds the
/// server (they change nothing it contains).
const SOURCES: &[&str] = &[
    "src",
    "migrations",
    "static",
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=IM_TEST_SKIP_SERVICES");
    println!("cargo::rustc-check-cfg=cfg(im_skip_services)");
    let skip = std::env::var("IM_TEST_SKIP_SERVICES").unwrap_or_default();
    if !matches!(
        skip.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no"
    ) {
        println!("cargo::rustc-cfg=im_skip_services");
    }
    println!("cargo::rustc-env=IM_SERVER_COMMIT={}", commit());
}

/// `git rev-parse --short HEAD` (with `-dirty` when the sources differ from it) in a git
/// checkout of this crate; else `IM_BUILD_COMMIT` (a source tarball, a container build without
/// `.git`); else `unknown`.
fn commit() -> String {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    if let Some(commit) = git_commit(&manifest) {
        return commit;
    }
    println!("cargo::rerun-if-env-changed=IM_BUILD_COMMIT");
    match std::env::var("IM_BUILD_COMMIT") {
        Ok(given) if is_label(given.trim()) => given.trim().to_owned(),
        Ok(given) if !given.trim().is_empty() => {
            println!(
                "cargo::warning=IM_BUILD_COMMIT ignored: 1 to 64 letters, digits, '.', '_' or '-' expected"
            );
            "unknown".to_owned()
        }
        _ => "unknown".to_owned(),
    }
}

fn is_label(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The commit of the checkout at `dir`, if `dir` is the top of one and git runs. Tells cargo to
/// run this again when HEAD moves (a commit, a checkout) or a source changes, and at no other
/// time.
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    // Inside another project's repository (vendored), that repository's commit is not ours.
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let git_dir = PathBuf::from(git(dir, &["rev-parse", "--absolute-git-dir"])?);
    let common_dir = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|common| dir.join(common))
        .unwrap_or_else(|| git_dir.clone());
    // HEAD names the branch (a checkout changes it); the branch's ref moves with each commit,
    // or packed-refs when refs are packed. Only paths that exist: a missing one would rerun
    // this script on every build.
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(branch));
    }
    watched.extend(SOURCES.iter().map(|source| dir.join(source)));
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = !git(dir, &status)?.is_empty();
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// The trimmed output of a successful `git` in `dir`. `GIT_OPTIONAL_LOCKS=0`: `git status` must
/// not rewrite the index, which would look like a change to the next build.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
