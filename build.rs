//! The facts `wasm-admission --version` prints beside the crate version (src/commands/mod.rs):
//! the git commit it was built from and the target triple it was built for.
//!
//! - `WASM_ADMISSION_GIT_COMMIT`: the environment variable of that name when set (a build from a
//!   source archive, which has no `.git`), else `git rev-parse HEAD` in the crate's folder, else
//!   `unknown`. Rebuilt when HEAD moves (the files git keeps HEAD and the branch in).
//! - `WASM_ADMISSION_TARGET`: cargo's `TARGET` (`x86_64-unknown-linux-musl` for the image).
//!
//! Two facts from two commands do not need a build-dependency (vergen and the like bring a dozen
//! crates for them).
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Reruns this script when the file at `path` changes. Only files that exist: cargo reruns a
/// script on every build while one of its watched files is missing (a branch whose ref is packed
/// has no file of its own).
fn watch(path: Option<String>) {
    if let Some(path) = path.filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let dir = Path::new(&dir);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WASM_ADMISSION_GIT_COMMIT");

    let commit = match std::env::var("WASM_ADMISSION_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            // HEAD moves by a checkout (HEAD changes) or a commit (the branch's ref changes, or
            // packed-refs after a gc); cargo reruns this script when one of them changes.
            for path in ["HEAD", "packed-refs"] {
                watch(git(
                    dir,
                    &["rev-parse", "--path-format=absolute", "--git-path", path],
                ));
            }
            if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
                watch(git(
                    dir,
                    &["rev-parse", "--path-format=absolute", "--git-path", &branch],
                ));
            }
            git(dir, &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=WASM_ADMISSION_GIT_COMMIT={commit}");

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=WASM_ADMISSION_TARGET={target}");
}
