//! A TCP proxy in front of the S3 server that starts refusing writes: every
//! request is forwarded until `limit` write requests (PUT, POST, DELETE) have
//! passed; each later write is answered `403 AccessDenied` and its connection
//! closed, the way a bucket policy change or an expired write credential looks
//! to a client. Reads keep working.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) struct RefusingProxy {
    pub(crate) url: String,
    writes: Arc<AtomicUsize>,
    limit: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    /// Request lines of the forwarded writes, in order.
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl RefusingProxy {
    /// Proxies `upstream` (`http://127.0.0.1:PORT`), forwarding everything at first.
    pub(crate) fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (writes, limit, refused, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(usize::MAX)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let p = Self {
            url: format!("http://127.0.0.1:{port}"),
            writes: Arc::clone(&writes),
            limit: Arc::clone(&limit),
            refused: Arc::clone(&refused),
            log: Arc::clone(&log),
            stop: Arc::clone(&stop),
            port,
        };
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let counters = Counters {
                    writes: Arc::clone(&writes),
                    limit: Arc::clone(&limit),
                    refused: Arc::clone(&refused),
                    log: Arc::clone(&log),
                };
                std::thread::spawn(move || serve(client, server, &counters));
            }
        });
        p
    }

    /// From now on, refuse every write after `n` more have passed (counts reset).
    pub(crate) fn refuse_after(&self, n: usize) {
        self.log.lock().unwrap().clear();
        self.writes.store(0, Ordering::SeqCst);
        self.refused.store(0, Ordering::SeqCst);
        self.limit.store(n, Ordering::SeqCst);
    }

    /// Forward everything again.
    pub(crate) fn allow(&self) {
        self.refuse_after(usize::MAX);
    }

    /// Request lines (`PUT /bucket/key HTTP/1.1`) of the writes forwarded since
    /// the last `refuse_after` / `allow`.
    pub(crate) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Writes refused since the last `refuse_after`.
    pub(crate) fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

struct Counters {
    writes: Arc<AtomicUsize>,
    limit: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(client: TcpStream, server: TcpStream, c: &Counters) {
    let (Ok(mut to_client), Ok(mut from_server)) = (client.try_clone(), server.try_clone()) else { return };
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut server = server;
    // One request at a time: HTTP/1.1 clients (hyper) do not pipeline, so when a
    // request head arrives the previous response has been read in full.
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown(Shutdown::Both);
                    let _ = back.join();
                    return;
                }
                Ok(_) => {}
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let method = text.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let header = |name: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let length: u64 = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if matches!(method.as_str(), "PUT" | "POST" | "DELETE") {
            if c.writes.load(Ordering::SeqCst) >= c.limit.load(Ordering::SeqCst) {
                c.refused.fetch_add(1, Ordering::SeqCst);
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied (writes refused by the test proxy)</Message></Error>";
                let mut to = client.try_clone().unwrap();
                let _ = write!(
                    to,
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = to.flush();
                let _ = server.shutdown(Shutdown::Both);
                let _ = back.join();
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            c.writes.fetch_add(1, Ordering::SeqCst);
            c.log.lock().unwrap().push(text.lines().next().unwrap_or("").to_string());
        }
        if server.write_all(&head).is_err() {
            return;
        }
        let ok =
            if chunked { copy_chunked(&mut reader, &mut server) } else { copy_n(&mut reader, &mut server, length) };
        if !ok {
            let _ = server.shutdown(Shutdown::Both);
            let _ = back.join();
            return;
        }
    }
}

fn copy_n(from: &mut impl Read, to: &mut impl Write, n: u64) -> bool {
    std::io::copy(&mut from.take(n), to).is_ok_and(|c| c == n)
}

fn copy_chunked(from: &mut BufReader<TcpStream>, to: &mut TcpStream) -> bool {
    loop {
        let mut size_line = Vec::new();
        if from.read_until(b'\n', &mut size_line).unwrap_or(0) == 0 || to.write_all(&size_line).is_err() {
            return false;
        }
        let size = String::from_utf8_lossy(&size_line);
        let Ok(n) = u64::from_str_radix(size.trim().split(';').next().unwrap_or("").trim(), 16) else { return false };
        if n == 0 {
            // trailers, up to the blank line
            loop {
                let mut line = Vec::new();
                if from.read_until(b'\n', &mut line).unwrap_or(0) == 0 || to.write_all(&line).is_err() {
                    return false;
                }
                if line == b"\r\n" {
                    return true;
                }
            }
        }
        if !copy_n(from, to, n + 2) {
            return false;
        }
    }
}
