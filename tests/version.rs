//! `wasm-admission --version` names what was built: the crate version, the git commit and the
//! target triple (issue 33; a release's binaries, images and SBOMs are told apart by them).
use std::process::Command;

fn version_line() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasm-admission"))
        .arg("--version")
        .output()
        .expect("run wasm-admission --version");
    assert!(out.status.success(), "--version exited {}", out.status);
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim_end()
        .to_owned()
}

#[test]
fn version_names_the_crate_version_the_git_commit_and_the_target() {
    let line = version_line();
    let prefix = format!("wasm-admission {} (commit ", env!("CARGO_PKG_VERSION"));
    let rest = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let (commit, rest) = rest
        .split_once(", target ")
        .expect("`, target ` after the commit");
    let target = rest.strip_suffix(')').expect("closing parenthesis");

    // Built from this checkout: the commit is its HEAD (40 hex digits), or `unknown` outside git.
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "the commit is not the checkout's HEAD"),
        None => assert_eq!(commit, "unknown"),
    }

    // The test binary and wasm-admission are built for the same target.
    assert!(
        target.starts_with(&format!("{}-", std::env::consts::ARCH))
            && target.contains(std::env::consts::OS),
        "target {target:?} is not a {}-{} triple",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
}
