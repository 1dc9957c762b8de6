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

/// The target directory's profile folder, which holds the library cargo built for this test.
pub fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Compiles `tests/c/<name>.c` with the system compiler against the system malloc, into the
/// target directory, with `extra` arguments after the source (libraries to link); returns the
/// output's path. `shared` builds `lib<name>.so` instead of a program.
pub fn compile(name: &str, shared: bool, extra: &[&std::ffi::OsStr]) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let out_dir = profile_dir().join("capi-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = if shared {
        out_dir.join(format!("lib{name}.so"))
    } else {
        out_dir.join(name)
    };
    let mut cc = std::process::Command::new("cc");
    // -fno-builtin: every call must reach the allocator (GCC would fold `malloc(SIZE_MAX)`).
    // The bad-input program passes sizes and uses pointers GCC rightly warns about.
    cc.args(["-O2", "-g", "-fno-builtin", "-Wall", "-Werror", "-pthread"])
        .args([
            "-Wno-alloc-size-larger-than",
            "-Wno-use-after-free",
            "-Wno-unused-function",
        ]);
    if shared {
        cc.args(["-shared", "-fPIC"]);
    }
    let status = cc
        .arg("-o")
        .arg(&out)
        .arg(src.join(format!("{name}.c")))
        .args(extra)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "compiling {name}.c failed");
    out
}
