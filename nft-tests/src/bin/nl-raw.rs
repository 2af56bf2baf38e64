//! `nl-raw [--ext-ack] HEX...`: sends each HEX string as one datagram on a
//! NETLINK_NETFILTER socket and prints every reply queued by the time `sendto`
//! returned, so a test can compare the kernel's answers to raw (also malformed) input
//! with nftshimd's, through the preload library like any other client.
//!
//! Output, one line per event: `send N` / `send error ERRNO`, then per reply message
//! `recv type=T flags=F seq=S [error=E] payload=HEX`. Port ids are left out: the kernel
//! and nftshimd choose different ones.

use std::io;
use std::mem::size_of;

fn main() {
    let mut ext_ack = false;
    let mut datagrams = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--ext-ack" {
            ext_ack = true;
        } else {
            match from_hex(&arg) {
                Some(d) => datagrams.push(d),
                None => {
                    eprintln!("nl-raw: not hex: {arg}");
                    std::process::exit(2);
                }
            }
        }
    }
    // SAFETY: plain socket(2); the fd is only used below and closed at exit.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        eprintln!("nl-raw: socket: {}", io::Error::last_os_error());
        std::process::exit(1);
    }
    if ext_ack {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and a c_int option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_NETLINK,
                libc::NETLINK_EXT_ACK,
                &one as *const _ as *const libc::c_void,
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            println!(
                "setsockopt error {}",
                errno_name(io::Error::last_os_error())
            );
        }
    }
    for d in &datagrams {
        send(fd, d);
        drain(fd);
    }
}

fn send(fd: i32, data: &[u8]) {
    // SAFETY: zeroed sockaddr_nl is valid (the kernel, pid 0).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: data and addr outlive the call; lengths are theirs.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr() as *const libc::c_void,
            data.len(),
            0,
            &addr as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        println!("send error {}", errno_name(io::Error::last_os_error()));
    } else {
        println!("send {n}");
    }
}

/// Reads, without waiting, every datagram already queued.
fn drain(fd: i32) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe {
            libc::recv(
                fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                println!("recv error {}", errno_name(e));
            }
            return;
        }
        print_datagram(&buf[..n as usize]);
    }
}

fn print_datagram(d: &[u8]) {
    let u32_at = |o: usize| u32::from_ne_bytes(d[o..o + 4].try_into().unwrap());
    let u16_at = |o: usize| u16::from_ne_bytes(d[o..o + 2].try_into().unwrap());
    let mut off = 0;
    while d.len() - off >= 16 {
        let len = u32_at(off) as usize;
        if len < 16 || len > d.len() - off {
            break;
        }
        let (ty, flags, seq) = (u16_at(off + 4), u16_at(off + 6), u32_at(off + 8));
        let payload = &d[off + 16..off + len];
        let error = if ty == libc::NLMSG_ERROR as u16 && payload.len() >= 4 {
            format!(
                " error={}",
                i32::from_ne_bytes(payload[..4].try_into().unwrap())
            )
        } else {
            String::new()
        };
        println!(
            "recv type={ty:#06x} flags={flags:#06x} seq={seq}{error} payload={}",
            hex(payload)
        );
        off = (off + len + 3) & !3;
    }
    if off < d.len() {
        println!("recv trailing={}", hex(&d[off..]));
    }
}

fn errno_name(e: io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{n} ({e})"),
        None => e.to_string(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
