//! Shared by the GPU test files.

/// No GPU adapter for `test`: locally it prints why and passes; under CI (`CI` set, as
/// every CI service does; `.ci/run` installs Mesa's lavapipe) it fails, so a green CI run
/// means the GPU tests really ran.
pub fn no_adapter(test: &str, why: impl std::fmt::Display) {
    if std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false")) {
        panic!("{test}: no GPU adapter under CI: {why}");
    }
    eprintln!("{test}: skipped, {why}");
}
