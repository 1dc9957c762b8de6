//! Every server binary answers the load generator's batches and exits when its stdin closes
//! (`service` checks both); `/quit` ends a server too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolmalloc_workloads::service::{service, Params};

/// The servers `compare` runs: not rpmalloc's, which dies of SIGSEGV under tokio's load in
/// some runs (compare's note; it failed this test in CI once too).
const SERVERS: [&str; 5] = [
    env!("CARGO_BIN_EXE_poolmalloc-service-poolmalloc"),
    env!("CARGO_BIN_EXE_poolmalloc-service-system"),
    env!("CARGO_BIN_EXE_poolmalloc-service-jemalloc"),
    env!("CARGO_BIN_EXE_poolmalloc-service-mimalloc"),
    env!("CARGO_BIN_EXE_poolmalloc-service-snmalloc"),
];

#[test]
fn every_server_serves_the_generator_and_stops_with_its_stdin() {
    let p = Params {
        steady: Duration::from_millis(100),
        spike: 8,
        idle: Duration::from_millis(10),
    };
    for server in SERVERS {
        let r = service(Path::new(server), p).unwrap_or_else(|e| panic!("{server}: {e}"));
        assert!(r.requests >= 32, "{server}: {r:?}");
        assert!(r.p99 > Duration::ZERO && r.per_request() > Duration::ZERO);
        // A runtime, 32 connections and 8 batches of 200 KB parsed: a few MiB at least.
        assert!(
            r.peak_rss >= r.idle_rss && r.idle_rss >= 1 << 20,
            "{server}: {r:?}"
        );
    }
}

#[test]
fn quit_ends_the_server() {
    let mut child = Command::new(SERVERS[1])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim_end()
        .strip_prefix("PORT\t")
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .write_all(b"GET /nothing HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 404");
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .write_all(b"GET /quit HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Its stdin is still open: only /quit can have ended it.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            panic!("the server did not quit");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status}");
}
