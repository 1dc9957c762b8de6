//! service: a JSON-over-HTTP server (`crates/poolmalloc-service`: tokio, hyper, serde_json, the
//! allocator under test as its `#[global_allocator]`) under load from this process, over
//! loopback only.
//!
//! The generator uses std threads and plain HTTP/1.1 over `TcpStream`, so it brings no
//! dependency and, run in `poolmalloc` (whose global allocator is System), is the same for every
//! server. [`CONNECTIONS`] keep-alive connections to `127.0.0.1`, one thread each:
//! 1. steady: for `steady`, each sends a batch of about 1.4 KB (an array of records such as
//!    `{"user":"user-007","item":"item-01234","price":1299,"tags":["red","sale"]}`), waits for
//!    the answer and checks it, timing every request;
//! 2. spike: `spike` requests in all, of about 200 KB each (a burst of large batches);
//! 3. idle: the connections stay open and quiet for `idle`; then the server's resident set
//!    (`VmRSS`) and its high-water mark (`VmHWM`) are read from `/proc/<pid>/status`.
//!
//! Every answer is checked (status 200; the record count, the total of the prices and the number
//! of users the server found, which it prints first, and one `"user"` key per record and per
//! group), so a server whose allocator breaks it fails the run instead of timing it. The server
//! exits when its stdin closes; it is killed on any failure, so none outlives the run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::blocks::{Fault, Result};
use crate::rng::Rng;
use crate::rss::status_bytes;

/// Keep-alive connections, one generator thread each.
pub const CONNECTIONS: usize = 32;
/// About how many bytes a steady request's body has, and a spike request's.
pub const STEADY_BODY: usize = 1400;
pub const SPIKE_BODY: usize = 200_000;
/// Distinct batches of each kind, sent in turn.
const STEADY_BATCHES: usize = 64;
const SPIKE_BATCHES: usize = 4;
/// How long any one step may take before the server counts as hung.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// How long the steady load lasts.
    pub steady: Duration,
    /// Large requests in the spike, over all connections.
    pub spike: usize,
    /// How long the connections stay idle after the spike before the idle RSS is read.
    pub idle: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Steady requests answered, and the wall time they took (all connections together).
    pub requests: u64,
    pub elapsed: Duration,
    /// The 99th percentile of the steady requests' latencies.
    pub p99: Duration,
    /// The server's peak resident set (VmHWM), and its resident set after the idle time.
    pub peak_rss: usize,
    pub idle_rss: usize,
}

impl Report {
    /// Wall time per steady request: 1 / throughput.
    pub fn per_request(&self) -> Duration {
        Duration::from_secs_f64(self.elapsed.as_secs_f64() / self.requests.max(1) as f64)
    }
}

/// A request ready to send, and what its answer must say.
struct Batch {
    request: Vec<u8>,
    records: usize,
    cents: u64,
    users: usize,
}

const TAGS: [&str; 8] = [
    "red", "blue", "sale", "new", "gift", "bulk", "eco", "limited",
];

/// Records of `users` possible users until the body has about `body` bytes.
fn batch(rng: &mut Rng, body: usize, users: usize) -> Batch {
    let mut json = String::with_capacity(body + 128);
    let (mut records, mut cents) = (0, 0u64);
    let mut seen = vec![false; users];
    json.push('[');
    while json.len() < body {
        if records > 0 {
            json.push(',');
        }
        let user = rng.range(0, users - 1);
        let price = rng.range(1, 100_000) as u64;
        seen[user] = true;
        let tags: Vec<String> = (0..rng.range(0, 3))
            .map(|_| format!("\"{}\"", TAGS[rng.range(0, TAGS.len() - 1)]))
            .collect();
        json.push_str(&format!(
            "{{\"user\":\"user-{user:03}\",\"item\":\"item-{:05}\",\"price\":{price},\"tags\":[{}]}}",
            rng.range(0, 99_999),
            tags.join(",")
        ));
        records += 1;
        cents += price;
    }
    json.push(']');
    let mut request = format!(
        "POST /batch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        json.len()
    )
    .into_bytes();
    request.extend_from_slice(json.as_bytes());
    Batch {
        request,
        records,
        cents,
        users: seen.iter().filter(|&&s| s).count(),
    }
}

/// One keep-alive connection and its reusable buffers.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: String,
    body: Vec<u8>,
}

impl Connection {
    fn open(port: u16) -> Result<Connection> {
        let io = |e: std::io::Error| Fault(format!("service: connecting to 127.0.0.1:{port}: {e}"));
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        Ok(Connection {
            writer: stream.try_clone().map_err(io)?,
            reader: BufReader::new(stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends `b`, reads the answer and checks it.
    fn request(&mut self, b: &Batch) -> Result<()> {
        let io = |e: std::io::Error| Fault(format!("service: the connection broke: {e}"));
        self.writer.write_all(&b.request).map_err(io)?;
        self.line.clear();
        self.reader.read_line(&mut self.line).map_err(io)?;
        let status = self.line.trim_end().to_string();
        let mut length = None;
        loop {
            self.line.clear();
            if self.reader.read_line(&mut self.line).map_err(io)? == 0 {
                return Err(Fault("service: the server closed the connection".into()));
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let Some(length) = length else {
            return Err(Fault(format!(
                "service: an answer without a length ({status})"
            )));
        };
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).map_err(io)?;
        check(b, &status, &self.body)
    }
}

/// Whether an answer is the server's answer to `b` (see the module's doc).
fn check(b: &Batch, status: &str, body: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(body);
    if status != "HTTP/1.1 200 OK" {
        return Err(Fault(format!(
            "service: '{status}' for a batch of {} records: {}",
            b.records,
            text.chars().take(200).collect::<String>()
        )));
    }
    let head = format!(
        "{{\"records\":{},\"cents\":{},\"groups\":[",
        b.records, b.cents
    );
    let users = text.matches("\"user\":").count();
    if !text.starts_with(&head) || !text.ends_with("]}") || users != b.records + b.users {
        return Err(Fault(format!(
            "service: a wrong answer to a batch of {} records of {} users ({} cents): {} bytes, \
             {users} \"user\" keys, starting {}",
            b.records,
            b.users,
            b.cents,
            body.len(),
            text.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// The server process: killed when dropped unless it has exited.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Server {
    /// Starts `program` and reads the port it prints.
    fn start(program: &Path) -> Result<(Server, u16)> {
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Fault(format!("could not start {}: {e}", program.display())))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut server = Server { child, stdin };
        let (tx, rx) = mpsc::channel();
        // Read on a thread of its own: a server that hangs before printing is killed below,
        // which ends the read.
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let line = rx.recv_timeout(TIMEOUT).unwrap_or_default();
        match line.trim_end().strip_prefix("PORT\t").map(str::parse) {
            Some(Ok(port)) => Ok((server, port)),
            _ => Err(Fault(format!(
                "{} printed no port ({:?}): {}",
                program.display(),
                line.trim_end(),
                server.kill_and_stderr()
            ))),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server and returns what it wrote to stderr.
    fn kill_and_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        err.trim().to_string()
    }

    /// Closes its stdin and waits for it to exit by itself, with status 0.
    fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(Fault(format!(
                        "the server exited with {status}: {}",
                        self.kill_and_stderr()
                    )))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(Fault(format!("waiting for the server: {e}"))),
            }
        }
        Err(Fault(format!(
            "the server did not exit when its stdin closed: {}",
            self.kill_and_stderr()
        )))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills the server after `e` and adds what it wrote to stderr.
fn fail(mut server: Server, e: Fault) -> Fault {
    let stderr = server.kill_and_stderr();
    if stderr.is_empty() {
        e
    } else {
        Fault(format!("{e} (server: {stderr})"))
    }
}

/// Runs `f` on every connection at once, one thread each, and returns what each returned.
fn on_every_connection<T: Send>(
    connections: &mut [Connection],
    f: impl Fn(usize, &mut Connection) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    std::thread::scope(|s| {
        let f = &f;
        let threads: Vec<_> = connections
            .iter_mut()
            .enumerate()
            .map(|(i, c)| s.spawn(move || f(i, c)))
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a generator thread does not panic"))
            .collect()
    })
}

/// Runs the server `program` under the load of `p` (see the module's doc).
pub fn service(program: &Path, p: Params) -> Result<Report> {
    let mut rng = Rng::new(0x5E41);
    let steady: Vec<Batch> = (0..STEADY_BATCHES)
        .map(|_| batch(&mut rng, STEADY_BODY, 16))
        .collect();
    let spike: Vec<Batch> = (0..SPIKE_BATCHES)
        .map(|_| batch(&mut rng, SPIKE_BODY, 500))
        .collect();

    let (server, port) = Server::start(program)?;
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        match Connection::open(port) {
            Ok(c) => connections.push(c),
            Err(e) => return Err(fail(server, e)),
        }
    }

    let start = Instant::now();
    let deadline = start + p.steady;
    let latencies = on_every_connection(&mut connections, |i, c| {
        let mut times = Vec::new();
        let mut n = i;
        while Instant::now() < deadline {
            let t = Instant::now();
            c.request(&steady[n % steady.len()])?;
            times.push(t.elapsed());
            n += CONNECTIONS;
        }
        Ok(times)
    });
    let elapsed = start.elapsed();
    let mut latencies: Vec<Duration> = match latencies {
        Ok(l) => l.into_iter().flatten().collect(),
        Err(e) => return Err(fail(server, e)),
    };
    let spiked = on_every_connection(&mut connections, |i, c| {
        for k in (i..p.spike).step_by(CONNECTIONS) {
            c.request(&spike[k % spike.len()])?;
        }
        Ok(())
    });
    if let Err(e) = spiked {
        return Err(fail(server, e));
    }
    std::thread::sleep(p.idle);
    let pid = server.pid();
    let (idle_rss, peak_rss) = match (status_bytes(pid, "VmRSS"), status_bytes(pid, "VmHWM")) {
        (Some(idle), Some(peak)) => (idle, peak),
        _ => {
            let e = Fault(format!("service: no VmRSS/VmHWM in /proc/{pid}/status"));
            return Err(fail(server, e));
        }
    };
    drop(connections);
    server.stop()?;

    if latencies.is_empty() {
        return Err(Fault("service: no request was answered".into()));
    }
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    Ok(Report {
        requests: latencies.len() as u64,
        elapsed,
        p99,
        peak_rss,
        idle_rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_the_size_asked_and_know_their_answer() {
        let mut rng = Rng::new(1);
        let b = batch(&mut rng, STEADY_BODY, 16);
        let text = String::from_utf8(b.request.clone()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /batch HTTP/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(
            (STEADY_BODY..STEADY_BODY + 200).contains(&body.len()),
            "{}",
            body.len()
        );
        assert_eq!(body.matches("\"user\":").count(), b.records);
        assert!(b.users >= 2 && b.users <= 16, "{}", b.users);
        let big = batch(&mut rng, SPIKE_BODY, 500);
        assert!(big.request.len() >= SPIKE_BODY && big.records > 1000);
    }

    #[test]
    fn an_answer_is_checked_against_the_batch() {
        let b = Batch {
            request: Vec::new(),
            records: 2,
            cents: 30,
            users: 1,
        };
        let good = br#"{"records":2,"cents":30,"groups":[{"cents":30,"count":2,"items":[{"user":"a"},{"user":"a"}],"user":"a"}]}"#;
        assert!(check(&b, "HTTP/1.1 200 OK", good).is_ok());
        let e = check(&b, "HTTP/1.1 400 Bad Request", b"no").unwrap_err();
        assert!(e.0.contains("400"), "{e}");
        let short = br#"{"records":2,"cents":30,"groups":[{"cents":30,"count":2,"items":[{"user":"a"}],"user":"a"}]}"#;
        assert!(check(&b, "HTTP/1.1 200 OK", short).is_err());
        let wrong_total = br#"{"records":2,"cents":31,"groups":[{"cents":30,"count":2,"items":[{"user":"a"},{"user":"a"}],"user":"a"}]}"#;
        assert!(check(&b, "HTTP/1.1 200 OK", wrong_total).is_err());
    }
}
