//! `poolmalloc-exec REPORT LIB -- CMD [ARGS..]`: the launcher of `poolmalloc compare -- CMD`'s
//! runs (see `poolmalloc_cli::launch`). Links nothing but std and libc, to stay small.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match &args[..] {
        [report, lib, dash, command @ ..] if dash == "--" && !command.is_empty() => {
            let code = poolmalloc_cli::launch::exec(report.as_ref(), lib, command);
            std::process::exit(code)
        }
        _ => {
            eprintln!(
                "usage: {} REPORT LIB -- CMD [ARGS..]",
                poolmalloc_cli::launch::LAUNCHER
            );
            std::process::exit(2)
        }
    }
}
