//! The command line, parsed by hand: every mistake names the bad value and what is allowed, and
//! `main` exits with status 2 on it.

use std::path::PathBuf;

use poolmalloc_workloads::{AllocatorId, Workload, COUNTED_CASES};

pub const USAGE: &str = "\
usage: poolmalloc <command> [options]

commands:
  compare [--quick] [--workloads W,..] [--allocators A,..] [--threads T,..] [--reps N] [--out DIR]
      run every workload on every allocator, print the table, write compare.json and
      compare.svg to DIR (default target/poolmalloc-compare); --threads 1,2,4,8 runs the
      multi-threaded workloads once per thread count
  compare [--quick] [--reps N] [--out DIR] [--lib NAME=PATH].. [--env K=V].. [--check-output]
          -- CMD [ARGS..]
      run CMD under every allocator (LD_PRELOAD: poolmalloc's C library, jemalloc, mimalloc and
      tcmalloc where installed, each --lib; and the system allocator): a warm-up run each, then
      N interleaved repetitions; the table gives wall, user and system time and peak RSS. A run
      whose exit status (with --check-output: or standard output) differs from the system
      allocator's run has failed
  stats [--json] [--fragmentation] [--k K]
      play the seed scenario (512·K one-byte objects, free 511 of each 512, then the rest) on
      poolmalloc and print its stats report after each step (K defaults to 1000); with
      --fragmentation, tell each step instead: the pools survivors pin, the bytes they hold,
      the arenas that cannot go back, and what freeing gave back
  run [--stats | --json] -- CMD [ARGS..]
      run CMD with poolmalloc's C library preloaded (LD_PRELOAD); each process prints its stats
      report to stderr when it exits (--json: as JSON); CMD's exit status is passed through.
      Needs libpoolmalloc_capi.so beside this program (cargo build --release -p poolmalloc-capi)
      or at POOLMALLOC_LIB
  help
      print this text";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompareArgs {
    pub quick: bool,
    pub workloads: Vec<Workload>,
    pub allocators: Vec<AllocatorId>,
    /// Thread counts for the multi-threaded workloads; empty: each workload's own.
    pub threads: Vec<usize>,
    /// Repetitions of every workload × allocator; `None`: 3 when quick, 5 otherwise.
    pub reps: Option<usize>,
    pub out: PathBuf,
    /// `-- CMD [ARGS..]`: compare on this program instead of the workloads.
    pub program: Option<ProgramArgs>,
}

impl CompareArgs {
    pub fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.quick { 3 } else { 5 })
    }
}

/// `compare -- CMD`'s own options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramArgs {
    pub command: Vec<String>,
    /// `--lib NAME=PATH`: a library to preload under NAME (adds a column, or replaces the one
    /// found for NAME).
    pub libs: Vec<(String, PathBuf)>,
    /// `--env K=V`: the command's environment, under every allocator.
    pub env: Vec<(String, String)>,
    pub check_output: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Compare(CompareArgs),
    Stats {
        json: bool,
        k: usize,
    },
    /// `stats --fragmentation`: the seed scenario with each step's fragmentation snapshot.
    Fragmentation {
        json: bool,
        k: usize,
    },
    Help,
    /// `run`: a command under the preloaded C library.
    Run {
        report: crate::run::Report,
        command: Vec<String>,
    },
    /// Internal: one fresh-process run for `compare` (`__child <workload> <allocator> [--quick]`).
    Child {
        workload: Workload,
        allocator: AllocatorId,
        quick: bool,
        threads: Vec<usize>,
    },
    /// Internal: a run for the instruction counts (`__count <case> <allocator|bump> <n>`).
    Count {
        case: String,
        allocator: AllocatorId,
        n: u64,
    },
}

/// A bad command line: the message names the bad value and the allowed ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

fn err<T>(msg: String) -> Result<T, UsageError> {
    Err(UsageError(msg))
}

const COMMANDS: &str = "compare, stats, run, help";
const COMPARE_OPTIONS: &str = "--quick, --workloads, --allocators, --threads, --reps, --out, \
                               --lib, --env, --check-output, then -- CMD";
/// The options that choose what runs of the built-in workloads, not of `-- CMD`.
const WORKLOAD_OPTIONS: [&str; 3] = ["--workloads", "--allocators", "--threads"];
/// The options for `-- CMD` only.
const PROGRAM_OPTIONS: [&str; 3] = ["--lib", "--env", "--check-output"];
/// More threads than this is a typing mistake, not a test.
const MAX_THREADS: u64 = 1024;
const STATS_OPTIONS: &str = "--json, --fragmentation, --k";

/// Splits `--name=value` into its parts; other arguments are returned whole.
fn split_eq(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('=') {
        Some((name, value)) if name.starts_with("--") => (name, Some(value)),
        _ => (arg, None),
    }
}

/// Adds the values of a list option — `--opt a,b`, `--opt a b`, `--opt=a,b`, repeated or not —
/// to `into`, each parsed and kept once. No value at all names the allowed ones.
fn add_list_values<'a, T: PartialEq>(
    option: &str,
    inline: Option<&'a str>,
    rest: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
    allowed: &str,
    parse: fn(&str) -> Result<T, UsageError>,
    into: &mut Vec<T>,
) -> Result<(), UsageError> {
    let mut raw = Vec::new();
    if let Some(v) = inline {
        raw.push(v);
    } else {
        while let Some(&next) = rest.peek() {
            if next.starts_with("--") {
                break;
            }
            raw.push(next);
            rest.next();
        }
    }
    let mut values = raw
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .peekable();
    if values.peek().is_none() {
        return err(format!("{option} needs a value (allowed: {allowed})"));
    }
    for v in values {
        let value = parse(v)?;
        if !into.contains(&value) {
            into.push(value);
        }
    }
    Ok(())
}

fn one_value<'a>(
    option: &str,
    inline: Option<&'a str>,
    rest: &mut impl Iterator<Item = &'a str>,
    allowed: &str,
) -> Result<&'a str, UsageError> {
    match inline.or_else(|| rest.next()) {
        Some(v) if !v.is_empty() && !v.starts_with("--") => Ok(v),
        _ => err(format!("{option} needs a value ({allowed})")),
    }
}

fn whole_number(option: &str, v: &str, min: u64) -> Result<u64, UsageError> {
    match v.parse::<u64>() {
        Ok(n) if n >= min => Ok(n),
        _ => err(format!(
            "{option}: '{v}' is not a whole number of at least {min}"
        )),
    }
}

fn parse_workload(v: &str) -> Result<Workload, UsageError> {
    Workload::parse(v).ok_or_else(|| {
        UsageError(format!(
            "unknown workload '{v}' (allowed: {})",
            Workload::names()
        ))
    })
}

fn parse_threads(v: &str) -> Result<usize, UsageError> {
    match whole_number("--threads", v, 1)? {
        n if n <= MAX_THREADS => Ok(n as usize),
        _ => err(format!(
            "--threads: '{v}' is more than {MAX_THREADS} threads"
        )),
    }
}

/// `NAME=VALUE` of `--lib` and `--env`, both parts non-empty.
fn name_value<'a>(option: &str, v: &'a str, what: &str) -> Result<(&'a str, &'a str), UsageError> {
    match v.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name, value)),
        _ => err(format!("{option}: '{v}' is not {what}")),
    }
}

fn parse_allocator(v: &str) -> Result<AllocatorId, UsageError> {
    match AllocatorId::parse(v) {
        Some(a) if AllocatorId::TABLE.contains(&a) => Ok(a),
        _ => err(format!(
            "unknown allocator '{v}' (allowed: {})",
            AllocatorId::table_names()
        )),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let mut it = args.iter().map(String::as_str).peekable();
    let Some(command) = it.next() else {
        return err(format!("no command given (allowed: {COMMANDS})"));
    };
    match command {
        "compare" => parse_compare(it),
        "stats" => parse_stats(it),
        "run" => parse_run(it),
        "help" | "--help" | "-h" => match it.next() {
            None => Ok(Command::Help),
            Some(extra) => err(format!("help takes no arguments, got '{extra}'")),
        },
        "__child" => parse_child(it),
        "__count" => parse_count(it),
        other => err(format!("unknown command '{other}' (allowed: {COMMANDS})")),
    }
}

fn parse_compare<'a>(
    mut it: std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> Result<Command, UsageError> {
    let mut a = CompareArgs {
        quick: false,
        workloads: Vec::new(),
        allocators: Vec::new(),
        threads: Vec::new(),
        reps: None,
        out: PathBuf::from("target/poolmalloc-compare"),
        program: None,
    };
    let mut p = ProgramArgs::default();
    let mut seen = Vec::new();
    while let Some(arg) = it.next() {
        let (name, inline) = split_eq(arg);
        seen.push(name);
        match name {
            "--" => {
                p.command = it.by_ref().map(str::to_string).collect();
                if p.command.is_empty() {
                    return err(
                        "compare -- needs a command: poolmalloc compare [OPTIONS] -- \
                                CMD [ARGS..]"
                            .into(),
                    );
                }
            }
            "--check-output" if inline.is_none() => p.check_output = true,
            "--lib" => {
                let v = one_value("--lib", inline, &mut it, "NAME=PATH")?;
                let (lib, path) = name_value("--lib", v, "NAME=PATH")?;
                if lib == crate::column::SYSTEM || lib.contains(',') {
                    return err(format!(
                        "--lib: '{lib}' cannot name a library (system is the allocator with \
                         nothing preloaded; names have no commas)"
                    ));
                }
                p.libs.retain(|(n, _)| n != lib);
                p.libs.push((lib.to_string(), PathBuf::from(path)));
            }
            "--env" => {
                let v = one_value("--env", inline, &mut it, "K=V")?;
                let (k, value) = name_value("--env", v, "K=V")?;
                p.env.push((k.to_string(), value.to_string()));
            }
            "--threads" => add_list_values(
                name,
                inline,
                &mut it,
                "whole numbers of at least 1, such as 1,2,4,8",
                parse_threads,
                &mut a.threads,
            )?,
            "--quick" if inline.is_none() => a.quick = true,
            "--workloads" => add_list_values(
                name,
                inline,
                &mut it,
                &Workload::names(),
                parse_workload,
                &mut a.workloads,
            )?,
            "--allocators" => add_list_values(
                name,
                inline,
                &mut it,
                &AllocatorId::table_names(),
                parse_allocator,
                &mut a.allocators,
            )?,
            "--reps" => {
                let v = one_value("--reps", inline, &mut it, "a whole number of at least 1")?;
                a.reps = Some(whole_number("--reps", v, 1)? as usize);
            }
            "--out" => {
                a.out = PathBuf::from(one_value("--out", inline, &mut it, "a directory")?);
            }
            _ => {
                return err(format!(
                    "unknown option '{arg}' for compare (allowed: {COMPARE_OPTIONS})"
                ))
            }
        }
    }
    let program = !p.command.is_empty();
    let misplaced = if program {
        WORKLOAD_OPTIONS.iter().find(|o| seen.contains(o))
    } else {
        PROGRAM_OPTIONS.iter().find(|o| seen.contains(o))
    };
    if let Some(option) = misplaced {
        return err(if program {
            format!(
                "{option} is for the built-in workloads; compare -- CMD runs every allocator \
                 found (add one with --lib NAME=PATH)"
            )
        } else {
            format!("{option} is for compare -- CMD [ARGS..] only")
        });
    }
    if program {
        a.program = Some(p);
    }
    if a.workloads.is_empty() {
        a.workloads = Workload::ALL.to_vec();
    }
    if a.allocators.is_empty() {
        a.allocators = AllocatorId::TABLE.to_vec();
    }
    // Table order, whatever order they were named in.
    a.allocators.sort();
    Ok(Command::Compare(a))
}

fn parse_stats<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, UsageError> {
    let (mut json, mut k, mut fragmentation) = (false, 1000, false);
    while let Some(arg) = it.next() {
        let (name, inline) = split_eq(arg);
        match name {
            "--json" if inline.is_none() => json = true,
            "--fragmentation" if inline.is_none() => fragmentation = true,
            "--k" => {
                let v = one_value("--k", inline, &mut it, "a whole number of at least 1")?;
                k = whole_number("--k", v, 1)? as usize;
            }
            _ => {
                return err(format!(
                    "unknown option '{arg}' for stats (allowed: {STATS_OPTIONS})"
                ))
            }
        }
    }
    if fragmentation {
        return Ok(Command::Fragmentation { json, k });
    }
    Ok(Command::Stats { json, k })
}

fn parse_run<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, UsageError> {
    use crate::run::Report;
    let mut report = Report::Text;
    let mut command = Vec::new();
    for arg in it.by_ref() {
        match arg {
            "--stats" => report = Report::Text,
            "--json" => report = Report::Json,
            "--" => break,
            option if option.starts_with('-') => {
                return err(format!(
                    "unknown option '{option}' for run (allowed: --stats, --json, then -- CMD)"
                ))
            }
            first => {
                command.push(first.to_string());
                break;
            }
        }
    }
    command.extend(it.map(str::to_string));
    if command.is_empty() {
        return err("run needs a command: poolmalloc run [--stats|--json] -- CMD [ARGS..]".into());
    }
    Ok(Command::Run { report, command })
}

fn parse_child<'a>(it: impl Iterator<Item = &'a str>) -> Result<Command, UsageError> {
    let mut it = it.peekable();
    let workload = parse_workload(it.next().unwrap_or(""))?;
    let allocator = parse_allocator(it.next().unwrap_or(""))?;
    let (mut quick, mut threads) = (false, Vec::new());
    while let Some(arg) = it.next() {
        match arg {
            "--quick" => quick = true,
            "--threads" => add_list_values(
                "--threads",
                None,
                &mut it,
                "whole numbers of at least 1",
                parse_threads,
                &mut threads,
            )?,
            other => {
                return err(format!(
                    "__child: unexpected '{other}' (allowed: --quick, --threads T,..)"
                ))
            }
        }
    }
    Ok(Command::Child {
        workload,
        allocator,
        quick,
        threads,
    })
}

fn parse_count<'a>(mut it: impl Iterator<Item = &'a str>) -> Result<Command, UsageError> {
    let case = it.next().unwrap_or("");
    if !COUNTED_CASES.contains(&case) {
        return err(format!(
            "unknown counted case '{case}' (allowed: {})",
            COUNTED_CASES.join(", ")
        ));
    }
    let name = it.next().unwrap_or("");
    let Some(allocator) = AllocatorId::parse(name) else {
        return err(format!(
            "unknown allocator '{name}' (allowed: {}, bump)",
            AllocatorId::table_names()
        ));
    };
    let n = whole_number("__count", it.next().unwrap_or(""), 1)?;
    Ok(Command::Count {
        case: case.to_string(),
        allocator,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Command, UsageError> {
        let v: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    fn compare(args: &str) -> CompareArgs {
        match p(args).unwrap() {
            Command::Compare(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compare_defaults_to_everything() {
        let c = compare("compare");
        assert!(!c.quick);
        assert_eq!(c.workloads, Workload::ALL);
        assert_eq!(c.allocators, AllocatorId::TABLE);
        assert_eq!(c.reps, None);
    }

    #[test]
    fn lists_take_commas_spaces_and_equals() {
        let c =
            compare("compare --quick --workloads pair,churn memory --allocators=mimalloc,system");
        assert!(c.quick);
        assert_eq!(
            c.workloads,
            [Workload::Pair, Workload::Churn, Workload::Memory]
        );
        assert_eq!(c.allocators, [AllocatorId::System, AllocatorId::Mimalloc]);
        let c = compare("compare --workloads seed --workloads seed --reps 7 --out /tmp/x");
        assert_eq!(c.workloads, [Workload::Seed]);
        assert_eq!(c.reps, Some(7));
        assert_eq!(c.out, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn bad_values_are_named_with_the_allowed_ones() {
        let e = p("compare --workloads pair,nope").unwrap_err().0;
        assert!(e.contains("'nope'") && e.contains("binary-trees"), "{e}");
        let e = p("compare --allocators tcmalloc").unwrap_err().0;
        assert!(e.contains("'tcmalloc'") && e.contains("jemalloc"), "{e}");
        let e = p("compare --allocators bump").unwrap_err().0;
        assert!(e.contains("'bump'"), "{e}");
        let e = p("compare --fast").unwrap_err().0;
        assert!(e.contains("'--fast'") && e.contains("--quick"), "{e}");
        let e = p("compare --reps 0").unwrap_err().0;
        assert!(e.contains("'0'"), "{e}");
        let e = p("compare --workloads --quick").unwrap_err().0;
        assert!(e.contains("--workloads needs a value"), "{e}");
        let e = p("frobnicate").unwrap_err().0;
        assert!(
            e.contains("'frobnicate'") && e.contains("compare, stats"),
            "{e}"
        );
        let e = p("stats --k x").unwrap_err().0;
        assert!(e.contains("'x'"), "{e}");
        let e = p("stats --yaml").unwrap_err().0;
        assert!(e.contains("'--yaml'") && e.contains("--json"), "{e}");
        assert!(p("").is_err());
    }

    #[test]
    fn compare_takes_a_program_after_the_double_dash() {
        let c = compare(
            "compare --quick --reps 2 --lib tc=/x/libtc.so --env PYTHONMALLOC=malloc \
             --check-output -- python3 -c pass --reps 9",
        );
        let p = c.program.clone().expect("a program");
        assert_eq!(p.command, ["python3", "-c", "pass", "--reps", "9"]);
        assert_eq!(p.libs, [("tc".to_string(), PathBuf::from("/x/libtc.so"))]);
        assert_eq!(p.env, [("PYTHONMALLOC".to_string(), "malloc".to_string())]);
        assert!(p.check_output && c.quick);
        assert_eq!(c.reps(), 2);
        // The last --lib for a name wins; --lib=NAME=PATH works too.
        let c = compare("compare --lib=jemalloc=/a --lib jemalloc=/b -- true");
        assert_eq!(
            c.program.unwrap().libs,
            [("jemalloc".to_string(), PathBuf::from("/b"))]
        );
        assert_eq!(compare("compare").program, None);
    }

    #[test]
    fn program_and_workload_options_do_not_mix() {
        let e = p("compare --workloads pair -- true").unwrap_err().0;
        assert!(
            e.contains("--workloads") && e.contains("--lib NAME=PATH"),
            "{e}"
        );
        let e = p("compare --threads 2 -- true").unwrap_err().0;
        assert!(e.contains("--threads"), "{e}");
        let e = p("compare --env A=1").unwrap_err().0;
        assert!(e.contains("--env is for compare -- CMD"), "{e}");
        let e = p("compare --").unwrap_err().0;
        assert!(e.contains("needs a command"), "{e}");
        let e = p("compare --lib nopath -- true").unwrap_err().0;
        assert!(e.contains("'nopath'") && e.contains("NAME=PATH"), "{e}");
        let e = p("compare --lib system=/x.so -- true").unwrap_err().0;
        assert!(e.contains("'system'"), "{e}");
        let e = p("compare --env =1 -- true").unwrap_err().0;
        assert!(e.contains("'=1'") && e.contains("K=V"), "{e}");
    }

    #[test]
    fn threads_take_a_list_of_counts() {
        assert_eq!(compare("compare --threads 1,2,4,8").threads, [1, 2, 4, 8]);
        assert_eq!(compare("compare --threads 4 2 --threads=4").threads, [4, 2]);
        assert!(compare("compare").threads.is_empty());
        let e = p("compare --threads 0").unwrap_err().0;
        assert!(e.contains("'0'") && e.contains("at least 1"), "{e}");
        let e = p("compare --threads 5000").unwrap_err().0;
        assert!(e.contains("'5000'") && e.contains("1024"), "{e}");
    }

    #[test]
    fn stats_fragmentation_takes_the_other_stats_options() {
        assert_eq!(
            p("stats --fragmentation").unwrap(),
            Command::Fragmentation {
                json: false,
                k: 1000
            }
        );
        assert_eq!(
            p("stats --k 5 --fragmentation --json").unwrap(),
            Command::Fragmentation { json: true, k: 5 }
        );
        let e = p("stats --fragmentation=yes").unwrap_err().0;
        assert!(e.contains("--fragmentation"), "{e}");
    }

    #[test]
    fn stats_and_internal_commands() {
        assert_eq!(
            p("stats").unwrap(),
            Command::Stats {
                json: false,
                k: 1000
            }
        );
        assert_eq!(
            p("stats --json --k=3").unwrap(),
            Command::Stats { json: true, k: 3 }
        );
        assert_eq!(
            p("__child memory jemalloc --quick").unwrap(),
            Command::Child {
                workload: Workload::Memory,
                allocator: AllocatorId::Jemalloc,
                quick: true,
                threads: vec![],
            }
        );
        assert_eq!(
            p("__child rptest mimalloc --threads 2,8").unwrap(),
            Command::Child {
                workload: Workload::Rptest,
                allocator: AllocatorId::Mimalloc,
                quick: false,
                threads: vec![2, 8],
            }
        );
        assert!(p("__child rptest mimalloc --threads 0").is_err());
        assert!(p("__child rptest mimalloc --reps 2").is_err());
        assert_eq!(
            p("__count pair-64 bump 1000").unwrap(),
            Command::Count {
                case: "pair-64".into(),
                allocator: AllocatorId::Bump,
                n: 1000
            }
        );
        assert!(p("__count pair-65 bump 1000").is_err());
        assert_eq!(
            p("__count pair-alone-16 poolmalloc 5").unwrap(),
            Command::Count {
                case: "pair-alone-16".into(),
                allocator: AllocatorId::PoolMalloc,
                n: 5
            }
        );
    }
}
