//! A user-space TCP delay proxy: each direction's bytes arrive a fixed time after they were
//! read, so a loopback sshd behind it behaves like a host at that round trip (`tc netem` does not
//! exist on these machines). It counts connections and the bytes sent to the server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// What went through the proxy.
#[derive(Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub bytes_up: AtomicU64,
}

/// Copies `from` to `to`, each chunk delivered `one_way` after it was read.
fn delayed_copy(mut from: TcpStream, mut to: TcpStream, one_way: Duration, counted: Option<Arc<Counters>>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(c) = &counted {
                    c.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                }
                if tx.send((Instant::now() + one_way, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

/// A TCP proxy on a free loopback port to `127.0.0.1:target` that delays each direction by
/// `one_way`; returns its port.
pub fn start_delay_proxy(target: u16, one_way: Duration, counters: Arc<Counters>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            counters.connections.fetch_add(1, Ordering::Relaxed);
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let up = Arc::clone(&counters);
            std::thread::spawn(move || delayed_copy(client, server, one_way, Some(up)));
            std::thread::spawn(move || delayed_copy(s2, c2, one_way, None));
        }
    });
    port
}
