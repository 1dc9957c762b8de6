/// The library cargo built for these tests, in the target directory's profile folder.
pub fn library() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash>
    let profile = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let lib = profile.join("libpoolmalloc_capi.so");
    // `cargo test` does not build a cdylib; `cargo xtask test` builds it first.
    assert!(
        lib.exists(),
        "{} was not built: run `cargo build -p poolmalloc-capi` first (cargo xtask test does)",
        lib.display()
    );
    lib
}
