//! `nflog-listen GROUP MS [mode=M,range=R] [qthresh=Q] [timeout=T] [nlbufsiz=N]
//! [flags=F]`: an nfnetlink_log listener, as libnetfilter_log is one: binds GROUP on a
//! NETLINK_NETFILTER socket, configures it (each setting its own request, answered
//! before the next), prints `ready`, then prints every datagram it receives for MS
//! milliseconds, message by message and attribute by attribute, so that a test can
//! compare what the kernel's nfnetlink_log sends with what nftshimd sends through the
//! preload library.
//!
//! Output: `config N error=E` per request; then per datagram `datagram LEN`, per
//! message `msg type=T flags=F seq=S pid=P family=F version=V res_id=R`, per
//! attribute `attr T VALUEHEX` (NFULA_TIMESTAMP's value printed as `ts`, NFULA_PAYLOAD
//! as its length, an FNV-1a hash and its first bytes; the NLMSG_DONE payload, which the
//! kernel leaves unwritten, left out).

use std::io::{self, Write};
use std::mem::size_of;
use std::time::{Duration, Instant};

const ULOG_CONFIG: u16 = 4 << 8 | 1;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_PAYLOAD: u16 = 9;

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize((v.len() + 3) & !3, 0);
    v
}

fn config(seq: u32, group: u16, attrs: &[u8]) -> Vec<u8> {
    let mut payload = vec![0u8, 0];
    payload.extend_from_slice(&group.to_be_bytes());
    payload.extend_from_slice(attrs);
    let mut v = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(&ULOG_CONFIG.to_ne_bytes());
    v.extend_from_slice(&(1u16 | 4).to_ne_bytes()); // NLM_F_REQUEST | NLM_F_ACK
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&payload);
    v
}

fn usage() -> ! {
    eprintln!("usage: nflog-listen GROUP MS [mode=M,range=R] [qthresh=Q] [timeout=T] [nlbufsiz=N] [flags=F]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        usage();
    }
    let group: u16 = args[0].parse().unwrap_or_else(|_| usage());
    let ms: u64 = args[1].parse().unwrap_or_else(|_| usage());
    let mut requests = vec![attr(1, &[1])]; // NFULNL_CFG_CMD_BIND
    for a in &args[2..] {
        let num = |s: &str| -> u32 { s.parse().unwrap_or_else(|_| usage()) };
        let (k, v) = a.split_once('=').unwrap_or_else(|| usage());
        requests.push(match k {
            "mode" => {
                let (m, r) = v.split_once(",range=").unwrap_or_else(|| usage());
                let mut val = num(r).to_be_bytes().to_vec();
                val.extend_from_slice(&[num(m) as u8, 0]);
                attr(2, &val)
            }
            "nlbufsiz" => attr(3, &num(v).to_be_bytes()),
            "timeout" => attr(4, &num(v).to_be_bytes()),
            "qthresh" => attr(5, &num(v).to_be_bytes()),
            "flags" => attr(6, &(num(v) as u16).to_be_bytes()),
            _ => usage(),
        });
    }
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        eprintln!("nflog-listen: socket: {}", io::Error::last_os_error());
        std::process::exit(1);
    }
    // Room for the largest batches (nlbufsiz up to 128 KiB).
    let rcvbuf: libc::c_int = 1 << 20;
    // SAFETY: valid fd and option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &rcvbuf as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let mut buf = vec![0u8; 1 << 18];
    for (i, r) in requests.iter().enumerate() {
        let d = config(i as u32 + 1, group, r);
        // SAFETY: d outlives the call.
        let n = unsafe { libc::send(fd, d.as_ptr() as *const libc::c_void, d.len(), 0) };
        if n < 0 {
            println!("config {} send error {}", i + 1, io::Error::last_os_error());
            continue;
        }
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
        let error = if n >= 20 {
            i32::from_ne_bytes(buf[16..20].try_into().expect("4 bytes"))
        } else {
            i32::MIN
        };
        println!("config {} error={error}", i + 1);
    }
    println!("ready");
    let _ = io::stdout().flush();
    let end = Instant::now() + Duration::from_millis(ms);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if rc <= 0 {
            continue;
        }
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
            println!("recv error {}", io::Error::last_os_error());
            continue;
        }
        print_datagram(&buf[..n as usize]);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn print_datagram(d: &[u8]) {
    println!("datagram {}", d.len());
    let u32_at = |o: usize| u32::from_ne_bytes(d[o..o + 4].try_into().expect("4 bytes"));
    let u16_at = |o: usize| u16::from_ne_bytes(d[o..o + 2].try_into().expect("2 bytes"));
    let mut off = 0;
    while d.len() - off >= 16 {
        let len = u32_at(off) as usize;
        if len < 16 || len > d.len() - off {
            println!("bad length {len}");
            return;
        }
        let (ty, flags, seq, pid) = (
            u16_at(off + 4),
            u16_at(off + 6),
            u32_at(off + 8),
            u32_at(off + 12),
        );
        let body = &d[off + 16..off + len];
        if ty == libc::NLMSG_DONE as u16 {
            println!("msg type={ty} flags={flags} seq={seq} pid={pid} done len={len}");
        } else if body.len() >= 4 {
            println!(
                "msg type={ty:#06x} flags={flags} seq={seq} pid={pid} family={} version={} \
                 res_id={}",
                body[0],
                body[1],
                u16::from_be_bytes([body[2], body[3]])
            );
            let mut a = 4;
            while body.len() - a >= 4 {
                let alen = u16::from_ne_bytes([body[a], body[a + 1]]) as usize;
                let kind = u16::from_ne_bytes([body[a + 2], body[a + 3]]);
                if alen < 4 || alen > body.len() - a {
                    println!("bad attr length {alen}");
                    break;
                }
                let value = &body[a + 4..a + alen];
                if kind == NFULA_TIMESTAMP {
                    println!("attr {kind} ts len={}", value.len());
                } else if kind == NFULA_PAYLOAD {
                    // Its length, first bytes (the headers) and a hash of all of it.
                    let head = &value[..value.len().min(48)];
                    let fnv = value.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                    });
                    println!(
                        "attr {kind} len={} fnv={fnv:016x} {}",
                        value.len(),
                        hex(head)
                    );
                } else {
                    println!("attr {kind} {}", hex(value));
                }
                a += (alen + 3) & !3;
            }
        }
        off += (len + 3) & !3;
    }
    if off < d.len() {
        println!("trailing {}", hex(&d[off..]));
    }
}
