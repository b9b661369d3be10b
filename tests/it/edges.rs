//! Issue 21, item 5 (Slowloris): a request head has a deadline, an idle
//! keep-alive connection is closed, and sockets held beyond the connection
//! cap (derived from the open-file limit) neither stop `/health` nor make
//! the accept loop spin.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, BIN};

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

/// Reads until the server closes the connection (EOF or reset); how long that took.
async fn until_closed(mut socket: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| started.elapsed())
}

/// A socket that sends a request head one byte every 300 ms, forever;
/// how long until the server closed it (`None`: still open at `limit`).
async fn trickle(addr: String, limit: Duration) -> Option<Duration> {
    let socket = TcpStream::connect(&addr).await.expect("connect");
    let (mut read, mut write) = socket.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let _ = write.write_all(head).await;
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    closed.ok().map(|()| started.elapsed())
}

/// A keep-alive connection that made one request and then says nothing.
async fn idle_after_one_request(addr: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("\"status\"") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("answer").unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    socket
}

#[tokio::test]
async fn trickling_and_idle_connections_are_closed() {
    let server =
        Server::start_with(&[("SESAME_HTTP__HEADER_TIMEOUT", "2s"), ("SESAME_HTTP__IDLE_TIMEOUT", "2s")]).await;
    let addr = addr(&server.url);
    let limit = Duration::from_secs(20);

    let trickles: Vec<_> = (0..100).map(|_| tokio::spawn(trickle(addr.clone(), limit))).collect();
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(idle_after_one_request(&addr).await);
    }
    let silent: Vec<TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(TcpStream::connect(&addr).await.unwrap());
        }
        v
    };
    let idle: Vec<_> = idle.into_iter().chain(silent).map(|s| tokio::spawn(until_closed(s, limit))).collect();

    for (i, t) in trickles.into_iter().enumerate() {
        let took = t.await.unwrap();
        assert!(took.is_some(), "trickling socket {i} still open after {limit:?}");
    }
    for (i, t) in idle.into_iter().enumerate() {
        let took = t.await.unwrap();
        assert!(took.is_some(), "idle socket {i} still open after {limit:?}");
    }
    // The service itself is fine.
    let health = server.http().get(format!("{}/health", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// The server's user + system CPU time so far, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn sockets_beyond_the_cap_neither_stop_health_nor_spin() {
    let dir = tempfile::tempdir().unwrap();
    // `ulimit -n 256` in a shell that then execs the server: the same
    // process, with 256 descriptors at most (soft and hard).
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg("ulimit -n 256 && exec \"$0\" \"$@\"").arg(BIN);
    let cmd = sesame_test_support::with_clean_env(cmd, dir.path(), "info", &[]);
    let process = sesame_test_support::ServerProcess::start(cmd, dir.path()).expect("server starts");
    let pid = process.child.id();
    let addr = addr(&process.url);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();

    // More sockets than descriptors, each having sent part of a head.
    let mut held = Vec::new();
    for _ in 0..400 {
        let Ok(Ok(mut socket)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await else {
            continue;
        };
        let _ = socket.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
        held.push(socket);
    }
    assert!(held.len() > 256, "the test holds more sockets than the server has descriptors ({})", held.len());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = cpu_ticks(pid);
    let started = Instant::now();
    for i in 0..5 {
        let answer = tokio::time::timeout(Duration::from_secs(5), http.get(format!("{}/health", process.url)).send())
            .await
            .unwrap_or_else(|_| panic!("/health #{i} did not answer within 5 s while sockets are held"))
            .expect("/health");
        assert_eq!(answer.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();
    let used = cpu_ticks(pid) - before;
    // Clock ticks are 1/100 s: a spinning accept loop uses about one per
    // 10 ms elapsed; allow a quarter of that.
    let spinning = elapsed.as_millis() as u64 / 10;
    assert!(used * 4 < spinning, "the server used {used} ticks of CPU in {elapsed:?} while idle sockets were held");
    drop(held);
}

/// A POST whose head is complete and whose body (`Content-Length: 100000`)
/// never finishes: the connection is busy, so only the body deadline frees it.
async fn slow_body(addr: &str) -> Option<TcpStream> {
    let mut socket = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await.ok()?.ok()?;
    let head = "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";
    socket.write_all(head.as_bytes()).await.ok()?;
    Some(socket)
}

/// Issue 21, item 5: a request body trickling in (one byte a second) is cut
/// at `SESAME_HTTP__BODY_TIMEOUT` with 408, and the connection is closed.
#[tokio::test]
async fn a_slow_request_body_is_cut_with_408() {
    let server = Server::start_with(&[("SESAME_HTTP__BODY_TIMEOUT", "2s")]).await;
    let addr = addr(&server.url);
    let socket = slow_body(&addr).await.expect("connect");
    let (mut read, mut write) = socket.into_split();
    let writer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    assert!(closed.is_ok(), "the slow body was not cut within 20 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Issue 21, items 5 and 6: connections holding a request body open are
/// busy (the cap cannot evict them); with `ulimit -n 256`, more of them than
/// the cap stop `/health` for at most the body deadline.
#[tokio::test]
async fn slow_bodies_at_the_cap_do_not_stop_health_beyond_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg("ulimit -n 256 && exec \"$0\" \"$@\"").arg(BIN);
    let env = [("SESAME_HTTP__BODY_TIMEOUT".to_owned(), "3s".to_owned())];
    let cmd = sesame_test_support::with_clean_env(cmd, dir.path(), "info", &env);
    let process = sesame_test_support::ServerProcess::start(cmd, dir.path()).expect("server starts");
    let addr = addr(&process.url);
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();

    let mut held = Vec::new();
    for _ in 0..300 {
        if let Some(socket) = slow_body(&addr).await {
            held.push(socket);
        }
    }
    assert!(held.len() > 200, "the test holds more slow bodies than the cap ({})", held.len());
    // Within the body deadline (3 s) plus a generous margin, /health answers.
    let started = Instant::now();
    loop {
        let answer =
            tokio::time::timeout(Duration::from_secs(3), http.get(format!("{}/health", process.url)).send()).await;
        if let Ok(Ok(answer)) = answer {
            assert_eq!(answer.status(), 200);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "/health still refused after 20 s of held slow bodies");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(held);
}
