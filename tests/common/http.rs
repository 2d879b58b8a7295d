//! A small HTTP/1.1 server on 127.0.0.1 for the download tests, serving one body with a scripted
//! behaviour per request (answer, honour `Range`, cut the connection, fail with a status, stall,
//! announce a huge size, send without end, trickle), and recording each request's `Range` header; plus a
//! builder of `.tar.gz` archives shaped like the official CIFAR-10 binary release, with members
//! of one's own added (links, devices, oversized files).

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

/// What the server does with one request.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// 200 with the body, or 206 from the requested offset when a `Range` is sent.
    Serve,
    /// 200 with the whole body even when a `Range` is sent.
    IgnoreRange,
    /// Headers announcing the rest of the body (from any `Range` offset), then only this many
    /// bytes, then the connection is closed.
    CutAfter(usize),
    /// This status with an empty body.
    Status(u16),
    /// Reads the request, then says nothing for this long.
    Stall(Duration),
    /// Announces a body of this many bytes in all (`Content-Length`, or `Content-Range` for a
    /// `Range` request), sends the real body, then closes.
    Announce(u64),
    /// 200 without a `Content-Length`, then zeros without end (until the client hangs up, or
    /// 1 GiB so that a test cannot run away).
    Endless,
    /// 200 announcing the whole body, then one byte of it at each interval (until the client
    /// hangs up or the body is sent).
    Trickle(Duration),
}

/// A running server; it lives until the test process ends.
pub struct Server {
    /// `http://127.0.0.1:PORT/cifar-10-binary.tar.gz`.
    pub url: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl Server {
    /// Serves `body`: request `i` follows `plans[i]`, later ones `then`.
    pub fn start(body: Vec<u8>, plans: Vec<Plan>, then: Plan) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&ranges);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let i = log.lock().unwrap().len();
                let plan = plans.get(i).copied().unwrap_or(then);
                let range = read_request(&stream);
                log.lock().unwrap().push(range.clone());
                let _ = respond(stream, &body, plan, range);
            }
        });
        Server { url, ranges }
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.ranges.lock().unwrap().len()
    }

    /// Each request's `Range` header, in order.
    pub fn ranges(&self) -> Vec<Option<String>> {
        self.ranges.lock().unwrap().clone()
    }
}

/// Reads the request head; returns its `Range` header.
fn read_request(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return range;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
}

fn respond(mut stream: TcpStream, body: &[u8], plan: Plan, range: Option<String>) -> std::io::Result<()> {
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let head = |status: &str, extra: String, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{extra}\r\n")
    };
    match plan {
        Plan::Status(code) => stream.write_all(head(&format!("{code} Scripted"), String::new(), 0).as_bytes()),
        Plan::Stall(t) => {
            std::thread::sleep(t);
            Ok(())
        }
        Plan::Announce(total) => {
            let from = from.unwrap_or(0);
            let extra = if from > 0 { format!("Content-Range: bytes {from}-{}/{total}\r\n", total - 1) } else { String::new() };
            let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", total - from as u64);
            stream.write_all(head.as_bytes())?;
            stream.write_all(body)
        }
        Plan::Endless => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let zeros = vec![0u8; 1 << 16];
            for _ in 0..(1 << 14) {
                stream.write_all(&zeros)?;
            }
            Ok(())
        }
        Plan::Trickle(every) => {
            stream.write_all(head("200 OK", String::new(), body.len()).as_bytes())?;
            for byte in body {
                stream.write_all(std::slice::from_ref(byte))?;
                stream.flush()?;
                std::thread::sleep(every);
            }
            Ok(())
        }
        Plan::IgnoreRange => {
            stream.write_all(head("200 OK", String::new(), body.len()).as_bytes())?;
            stream.write_all(body)
        }
        Plan::Serve | Plan::CutAfter(_) => {
            let (status, extra, rest) = match from {
                Some(f) if f < body.len() => {
                    ("206 Partial Content", format!("Content-Range: bytes {f}-{}/{}\r\n", body.len() - 1, body.len()), &body[f..])
                }
                Some(_) => return stream.write_all(head("416 Range Not Satisfiable", String::new(), 0).as_bytes()),
                None => ("200 OK", String::new(), body),
            };
            stream.write_all(head(status, extra, rest.len()).as_bytes())?;
            match plan {
                Plan::CutAfter(n) => stream.write_all(&rest[..n.min(rest.len())]),
                _ => stream.write_all(rest),
            }
        }
    }
}

/// The batch files of a `cifar-10-batches-bin/` folder, in order.
pub const MEMBERS: [&str; 7] = [
    "batches.meta.txt",
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];

/// A `.tar.gz` of `dir/cifar-10-batches-bin/` (as `super::write_cifar_bin` makes it) less the
/// members named in `skip`, with a `readme.html` beside them as in the official archive.
pub fn cifar_archive(dir: &Path, skip: &[&str]) -> Vec<u8> {
    cifar_archive_with(dir, skip, |_| {})
}

/// The archive builder [`cifar_archive_with`] passes on.
pub type ArchiveBuilder = tar::Builder<flate2::write::GzEncoder<Vec<u8>>>;

/// [`cifar_archive`] with `first` appending members of its own before the others.
pub fn cifar_archive_with(dir: &Path, skip: &[&str], first: impl FnOnce(&mut ArchiveBuilder)) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    first(&mut tar);
    for name in MEMBERS.iter().filter(|m| !skip.contains(m)) {
        tar.append_path_with_name(dir.join("cifar-10-batches-bin").join(name), format!("cifar-10-batches-bin/{name}")).unwrap();
    }
    let readme = b"<html>CIFAR-10</html>";
    let mut header = tar::Header::new_gnu();
    header.set_size(readme.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "cifar-10-batches-bin/readme.html", &readme[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
