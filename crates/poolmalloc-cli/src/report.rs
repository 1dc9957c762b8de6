//! compare's outputs: the text table, the JSON beside it and the SVG chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use poolmalloc_workloads::cores;
use serde_json::{json, Value};

use crate::column::Column;
use crate::summary::{Cell, Row};

/// A failed run: what ran (a workload, or the program), on which allocator, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure<K> {
    pub what: String,
    pub allocator: K,
    pub message: String,
}

/// What a comparison measured, whichever it ran: the built-in workloads or a program.
pub struct Outcome<K> {
    /// The command as the report's first line names it (`poolmalloc compare --quick`).
    pub command: String,
    pub allocators: Vec<K>,
    pub rows: Vec<Row<K>>,
    pub failures: Vec<Failure<K>>,
    pub reps: usize,
    /// Time of the runs (not of building anything first).
    pub elapsed: Duration,
    /// Lines printed under the table as they are: runs not made and why.
    pub notes: Vec<String>,
    /// What the JSON adds for this kind of comparison.
    pub extra: serde_json::Map<String, Value>,
}

/// poolmalloc's goal: at most this ratio to the best peer on every row.
pub const GOAL: f64 = 0.8;

/// What the machine is, for the report's first line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kb: Option<u64> = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    });
    let mut s = format!("{cpu}, {} cores", cores());
    if let Some(kb) = mem_kb {
        let _ = write!(s, ", {:.0} GiB RAM", kb as f64 / 1024.0 / 1024.0);
    }
    let _ = write!(s, ", {} {}", std::env::consts::OS, kernel.trim());
    s
}

/// Three significant digits at least (a program's seconds can be a few thousandths); an
/// infinite figure is "never" (a time to release that did not come within its limit).
fn number(x: f64) -> String {
    if x == f64::INFINITY {
        "never".into()
    } else if !x.is_finite() {
        "—".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 || x == 0.0 {
        format!("{x:.2}")
    } else {
        let decimals = (2.0 - x.abs().log10().floor()).min(6.0) as usize;
        format!("{x:.decimals$}")
    }
}

fn cell_text<K>(c: Option<&Cell<K>>) -> String {
    match c {
        None => "—".into(),
        Some(c) => {
            let ratio = match c.ratio {
                None => "  —  ".into(),
                Some(r) if r.is_infinite() => "∞×".into(),
                Some(r) => format!("{r:.2}×"),
            };
            let spread = match c.spread {
                s if s.is_nan() => "—".into(),
                s if s.is_infinite() => "∞".into(),
                s => format!("{:.0}%", s * 100.0),
            };
            format!("{:>7} ±{:<3} {:>6}", number(c.median), spread, ratio)
        }
    }
}

fn peers<K: Column>(allocators: &[K]) -> Vec<&str> {
    allocators
        .iter()
        .filter(|a| !a.is_poolmalloc())
        .map(|a| a.name())
        .collect()
}

/// The table: one row per case, one column per allocator, each cell "median ±spread ratio×";
/// then the notes and a line per failure.
pub fn table<K: Column>(outcome: &Outcome<K>) -> String {
    let allocators = &outcome.allocators;
    let mut t = String::new();
    // A long script on the command line would bury the header: compare.json has it whole.
    let mut command: String = outcome.command.replace('\n', "\\n");
    if command.chars().count() > 100 {
        command = command.chars().take(99).chain(['…']).collect();
    }
    let _ = writeln!(t, "{command} on {}", machine());
    let peers = peers(allocators);
    let _ = writeln!(
        t,
        "{} interleaved repetitions. Cell: median ±spread (interquartile range / median) and \
         median / best peer's median",
        outcome.reps
    );
    let _ = writeln!(
        t,
        "(peers: {}). Lower is better on every row. Goal for poolmalloc: ≤ {GOAL:.2}×.",
        if peers.is_empty() {
            "none in this run".to_string()
        } else {
            peers.join(", ")
        }
    );
    let _ = writeln!(t);
    let case_w = outcome
        .rows
        .iter()
        .map(|r| r.case.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let col_w = 22;
    let _ = write!(t, "{:<case_w$}  {:<6}", "case", "unit");
    for a in allocators {
        let _ = write!(t, "  {:>col_w$}", a.name());
    }
    let _ = writeln!(t, "  goal");
    for row in &outcome.rows {
        let _ = write!(t, "{:<case_w$}  {:<6}", row.case, row.unit.name());
        for a in allocators {
            let _ = write!(t, "  {:>col_w$}", cell_text(row.cell(a)));
        }
        let goal = match row.goal_ratio() {
            Some(r) if r <= GOAL => "met",
            Some(_) => "MISSED",
            None => "",
        };
        let _ = writeln!(t, "  {goal}");
    }
    for note in &outcome.notes {
        let _ = writeln!(t, "{note}");
    }
    for f in &outcome.failures {
        let _ = writeln!(
            t,
            "FAILED: {} on {}: {}",
            f.what,
            f.allocator.name(),
            f.message
        );
    }
    let _ = writeln!(t, "({:.1} s)", outcome.elapsed.as_secs_f64());
    t
}

fn json_number(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// A figure: a number, or "never" where it is infinite (see `number`).
fn json_figure(x: f64) -> Value {
    if x == f64::INFINITY {
        json!("never")
    } else {
        json_number(x)
    }
}

/// The JSON report: every sample, every summary, the machine and the failures.
pub fn json<K: Column>(outcome: &Outcome<K>) -> Value {
    let allocators = &outcome.allocators;
    let rows: Vec<Value> = outcome
        .rows
        .iter()
        .map(|r| {
            let mut results = serde_json::Map::new();
            for c in &r.cells {
                results.insert(
                    c.allocator.name().into(),
                    json!({
                        "median": json_figure(c.median),
                        "spread_iqr_over_median": json_number(c.spread),
                        "min": json_figure(c.min),
                        "max": json_figure(c.max),
                        "ratio_to_best_peer": c.ratio.map_or(Value::Null, json_number),
                        "samples": c.samples.iter().map(|&x| json_figure(x)).collect::<Vec<_>>(),
                    }),
                );
            }
            json!({
                "case": r.case,
                "unit": r.unit.name(),
                "best_peer": r.best_peer.as_ref().map(|a| a.name()),
                "poolmalloc_goal_met": r.goal_ratio().map(|x| x <= GOAL),
                "results": results,
            })
        })
        .collect();
    let mut doc = json!({
        "command": outcome.command,
        "machine": machine(),
        "cores": cores(),
        "repetitions": outcome.reps,
        "allocators": allocators.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "peers": peers(allocators),
        "goal_ratio": GOAL,
        "rows": rows,
        "notes": outcome.notes,
        "failures": outcome.failures.iter().map(|f| json!({
            "what": f.what,
            "allocator": f.allocator.name(),
            "message": f.message,
        })).collect::<Vec<_>>(),
        "elapsed_seconds": outcome.elapsed.as_secs_f64(),
    });
    if let Value::Object(map) = &mut doc {
        map.extend(outcome.extra.clone());
    }
    doc
}

fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 9] = [
        RGBColor(0xd6, 0x27, 0x28), // poolmalloc
        RGBColor(0xff, 0x7f, 0x0e), // poolmalloc-heap
        RGBColor(0x7f, 0x7f, 0x7f), // system
        RGBColor(0x1f, 0x77, 0xb4), // jemalloc
        RGBColor(0x2c, 0xa0, 0x2c), // mimalloc
        RGBColor(0x94, 0x67, 0xbd), // snmalloc
        RGBColor(0x8c, 0x56, 0x4b), // rpmalloc
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    PALETTE[i % PALETTE.len()]
}

/// The chart: for every row with a ratio, one horizontal bar per allocator, its median over the
/// best peer's on a log scale, with lines at 1 (the best peer) and at the goal.
pub fn svg<K: Column>(outcome: &Outcome<K>, path: &Path) -> Result<(), String> {
    let allocators = &outcome.allocators;
    let rows: Vec<&Row<K>> = outcome
        .rows
        .iter()
        .filter(|r| r.cells.iter().any(|c| c.ratio.is_some()))
        .collect();
    // An infinite ratio (never, against a peer that did) is drawn to the chart's edge.
    let ratios = rows
        .iter()
        .flat_map(|r| r.cells.iter().filter_map(|c| c.ratio))
        .filter(|r| r.is_finite());
    let (lo, hi) = ratios.fold((GOAL, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = ((lo * 0.8).max(1e-3), hi * 1.25);
    let n = rows.len().max(1);
    let height = 120 + 26 * n as u32 + 12 * (n * allocators.len()) as u32 / 2;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} ({})", r.case, r.unit.name()))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "median / best peer's median, log scale, lower is better (black: best peer; red: goal)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(200)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 0.26 && i < labels.len() {
                labels[n - 1 - i].clone()
            } else {
                String::new()
            }
        })
        .x_labels(16)
        .x_label_formatter(&|x| format!("{x}×"))
        .draw()
        .map_err(|x| e(&x))?;
    let slot = 0.8 / allocators.len().max(1) as f64;
    for (k, a) in allocators.iter().enumerate() {
        let style = color(k).filled();
        let bars = rows.iter().enumerate().filter_map(|(i, r)| {
            let ratio = r.cell(a)?.ratio?;
            let top = (n - 1 - i) as f64 + 0.9 - k as f64 * slot;
            Some(Rectangle::new(
                [(lo, top - slot * 0.9), (ratio.clamp(lo, hi), top)],
                style,
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|x| e(&x))?
            .label(a.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color(k).filled()));
    }
    for (x, style) in [(1.0, BLACK.stroke_width(1)), (GOAL, RED.stroke_width(1))] {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.0), (x, n as f64)],
                style,
            )))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Writes `compare.txt`, `compare.json` and `compare.svg` into `dir`.
pub fn write_all<K: Column>(
    outcome: &Outcome<K>,
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let txt = dir.join("compare.txt");
    let js = dir.join("compare.json");
    let chart = dir.join("compare.svg");
    std::fs::write(&txt, table(outcome)).map_err(|e| format!("{}: {e}", txt.display()))?;
    let body = serde_json::to_string_pretty(&json(outcome)).map_err(|e| e.to_string())?;
    std::fs::write(&js, body).map_err(|e| format!("{}: {e}", js.display()))?;
    svg(outcome, &chart)?;
    Ok(vec![txt, js, chart])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::summarize;
    use poolmalloc_workloads::AllocatorId::{self, *};
    use poolmalloc_workloads::Unit;

    #[test]
    fn never_reads_never_in_the_table_and_the_json() {
        let never = f64::INFINITY;
        let row = summarize(
            "memory/released-ms",
            Unit::Ms,
            vec![
                (PoolMalloc, vec![never, never, never]),
                (System, vec![12.0, 10.0, 11.0]),
                (Jemalloc, vec![never, never, 30.0]),
            ],
        );
        let pm = cell_text(row.cell(&PoolMalloc));
        assert!(pm.contains("never") && pm.contains("∞×"), "{pm}");
        assert!(cell_text(row.cell(&System)).contains("1.00×"));
        let outcome: Outcome<AllocatorId> = Outcome {
            command: "poolmalloc compare".into(),
            allocators: vec![PoolMalloc, System, Jemalloc],
            rows: vec![row],
            failures: Vec::new(),
            reps: 3,
            elapsed: Duration::from_secs(1),
            notes: Vec::new(),
            extra: serde_json::Map::new(),
        };
        let text = table(&outcome);
        assert!(text.contains("MISSED"), "{text}");
        let doc = json(&outcome);
        let results = &doc["rows"][0]["results"];
        assert_eq!(results["poolmalloc"]["median"], "never");
        assert_eq!(results["poolmalloc"]["ratio_to_best_peer"], Value::Null);
        assert_eq!(doc["rows"][0]["poolmalloc_goal_met"], false);
        assert_eq!(
            results["jemalloc"]["samples"],
            json!(["never", "never", 30.0])
        );
        assert_eq!(results["system"]["median"], 11.0);
    }
}
