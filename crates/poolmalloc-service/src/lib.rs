//! # poolmalloc-service: the server of `poolmalloc compare`'s `service` workload
//!
//! A small JSON-over-HTTP service, as a Rust program would write one: tokio's multi-threaded
//! runtime ([`WORKERS`] workers), hyper 1 serving HTTP/1.1 keep-alive connections, serde_json.
//! Each binary (`poolmalloc-service-<allocator>`) installs one allocator as its
//! `#[global_allocator]`, so every buffer, task, parsed value and answer goes through it; the
//! load generator is `poolmalloc_workloads::service`, in the `poolmalloc` process (on the system
//! allocator).
//!
//! The protocol:
//! - The server binds `127.0.0.1:0` and prints `PORT\t<port>` on stdout.
//! - `POST /batch` with a JSON array of records, each an object with at least `"user"` (a
//!   string) and `"price"` (a whole number of cents): the answer ([`answer`]) is
//!   `{"records":N,"cents":TOTAL,"groups":[..]}`, one group per user in user order, each
//!   `{"cents":..,"count":..,"items":[..],"user":..}` with its records sorted by price, then item.
//!   A body that is no such array is answered 400 with the reason.
//! - Any request to `/quit` is answered 200, then the server exits (status 0).
//! - The server exits (status 0) when its stdin closes: it never outlives the generator.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::process::exit;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// The runtime's worker threads.
pub const WORKERS: usize = 2;

/// The whole `main` of a server binary: serves until stdin closes or `/quit`; exits 1 (with the
/// reason on stderr) if it cannot serve, 2 if given arguments.
pub fn server_main(allocator: &str) -> ! {
    let name = format!("poolmalloc-service-{allocator}");
    if std::env::args().len() > 1 {
        eprintln!("{name}: takes no arguments (it prints its port and serves until stdin closes)");
        exit(2)
    }
    // The generator closing our stdin (or dying) ends the server.
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        exit(0)
    });
    match serve() {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(1)
        }
    }
}

/// Binds, prints the port and serves every connection on the runtime. Returns only on an error.
fn serve() -> std::io::Result<std::convert::Infallible> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "PORT\t{port}")?;
        stdout.flush()?;
        drop(stdout);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                // A connection that breaks ends alone; the generator reports what it saw.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    })
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::POST, "/batch") => {
            let body = req.into_body().collect().await?.to_bytes();
            match answer(&body) {
                Ok(out) => (StatusCode::OK, out),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n").into_bytes()),
            }
        }
        (_, "/quit") => {
            // Exits once the answer has had time to go out.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                exit(0)
            });
            (StatusCode::OK, b"{\"quit\":true}".to_vec())
        }
        _ => (StatusCode::NOT_FOUND, b"POST /batch or /quit\n".to_vec()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let kind = match status {
        StatusCode::OK => "application/json",
        _ => "text/plain",
    };
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

fn price(record: &Value) -> u64 {
    record["price"].as_u64().unwrap_or(0)
}

fn item(record: &Value) -> &str {
    record["item"].as_str().unwrap_or("")
}

/// The answer to a batch (see the crate's protocol): its records grouped by user, sorted.
pub fn answer(body: &[u8]) -> Result<Vec<u8>, String> {
    let records: Vec<Value> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON array of records: {e}"))?;
    let count = records.len();
    let mut total = 0u64;
    let mut by_user: HashMap<String, Vec<Value>> = HashMap::new();
    for (i, record) in records.into_iter().enumerate() {
        let user = match record.get("user").and_then(Value::as_str) {
            Some(u) => u.to_owned(),
            None => return Err(format!("record {i} has no \"user\" string")),
        };
        let Some(cents) = record.get("price").and_then(Value::as_u64) else {
            return Err(format!("record {i} has no whole-number \"price\""));
        };
        total += cents;
        by_user.entry(user).or_default().push(record);
    }
    let mut groups: Vec<(String, Vec<Value>)> = by_user.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(user, mut items)| {
            items.sort_by(|a, b| (price(a), item(a)).cmp(&(price(b), item(b))));
            let cents: u64 = items.iter().map(price).sum();
            json!({ "user": user, "count": items.len(), "cents": cents, "items": items })
        })
        .collect();
    let mut out = format!("{{\"records\":{count},\"cents\":{total},\"groups\":").into_bytes();
    serde_json::to_writer(&mut out, &groups).map_err(|e| e.to_string())?;
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::answer;
    use serde_json::Value;

    #[test]
    fn a_batch_is_grouped_by_user_and_sorted_by_price() {
        let batch = br#"[
            {"user":"bo","item":"b","price":300,"tags":["x"]},
            {"user":"al","item":"a","price":200,"tags":[]},
            {"user":"bo","item":"a","price":100,"tags":["y","z"]},
            {"user":"bo","item":"c","price":100,"tags":[]}
        ]"#;
        let out = answer(batch).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with(r#"{"records":4,"cents":700,"groups":["#),
            "{text}"
        );
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let groups = doc["groups"].as_array().unwrap();
        let users: Vec<&str> = groups.iter().map(|g| g["user"].as_str().unwrap()).collect();
        assert_eq!(users, ["al", "bo"]);
        assert_eq!(groups[1]["count"], 3);
        assert_eq!(groups[1]["cents"], 500);
        let items: Vec<(&str, u64)> = groups[1]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["item"].as_str().unwrap(), r["price"].as_u64().unwrap()))
            .collect();
        assert_eq!(items, [("a", 100), ("c", 100), ("b", 300)]);
        assert_eq!(groups[1]["items"][0]["tags"], serde_json::json!(["y", "z"]));
    }

    #[test]
    fn a_bad_batch_is_refused_with_the_reason() {
        assert!(answer(b"{\"user\":1}").unwrap_err().contains("array"));
        let e = answer(br#"[{"user":"a","price":1},{"price":2}]"#).unwrap_err();
        assert!(e.contains("record 1") && e.contains("user"), "{e}");
        let e = answer(br#"[{"user":"a","price":-1}]"#).unwrap_err();
        assert!(e.contains("price"), "{e}");
        assert_eq!(
            answer(b"[]").unwrap(),
            br#"{"records":0,"cents":0,"groups":[]}"#
        );
    }
}
