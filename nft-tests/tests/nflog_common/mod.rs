//! What nflog_e2e and nflog_input_e2e share: sockets made under other ids, an
//! nfnetlink_log listener on fw, frames injected from peer, the fw/peer pair and its
//! rules.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::{run_client, Daemon};
use nft_tests::netns::Netns;
use nft_tests::packets::in_netns;

pub fn ip(args: &[&str]) {
    let ok = Command::new("ip").args(args).status().unwrap().success();
    assert!(ok, "ip {args:?}");
}

/// A socket of fw's own: made with fsuid 4321 and fsgid 765 (its file's credentials)
/// when `other_ids`.
pub fn socket_as(domain: i32, ty: i32, proto: i32, other_ids: bool) -> OwnedFd {
    // SAFETY: credential calls affect this thread only; socket(2) is owned at once.
    unsafe {
        if other_ids {
            libc::setfsgid(765);
            libc::setfsuid(4321);
        }
        let fd = libc::socket(domain, ty, proto);
        assert!(fd >= 0, "socket");
        if other_ids {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
        OwnedFd::from_raw_fd(fd)
    }
}

pub fn sockaddr(a: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid; the variant is filled below.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match a {
        std::net::SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            (ss, std::mem::size_of::<libc::sockaddr_in>() as u32)
        }
        std::net::SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            (ss, std::mem::size_of::<libc::sockaddr_in6>() as u32)
        }
    }
}

pub fn bind(fd: &OwnedFd, a: std::net::SocketAddr) {
    let (addr, len) = sockaddr(a);
    // SAFETY: addr is valid for len.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const _ as *const libc::sockaddr,
            len,
        )
    };
    assert_eq!(rc, 0, "bind {a}");
}

/// Starts the listener on fw and waits until it has bound and configured its group.
pub fn listen(fw: &Netns, bins: &Binaries, daemon: Option<&Daemon>, args: &[&str]) -> Child {
    let listener = env!("CARGO_BIN_EXE_nflog-listen");
    let target = daemon.map_or(nft_tests::nft::Target::Kernel, |d| d.target(&bins.preload));
    let mut all = vec!["7", "3000"];
    all.extend_from_slice(args);
    let mut cmd = nft_tests::nft::command_in(fw.name(), &target, listener.as_ref(), &all);
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "listener ended early"
        );
        if line.trim() == "ready" {
            break;
        }
        assert!(line.contains("error=0"), "listener config: {line}");
    }
    child
}

/// The listener's output with fw's f0 (input or output device) named instead of
/// numbered.
pub fn finish(child: Child, f0: u32) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "listener: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let f0 = format!(" {:08x}", f0);
    text.lines()
        .map(|l| {
            if l.starts_with("attr 4 ") || l.starts_with("attr 5 ") {
                l.replace(&f0, " F0")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends `frames` on peer's p0, from one CPU (the messages then come in the
/// frames' order).
pub fn inject(peer: &Netns, frames: &[Vec<u8>]) {
    in_netns(peer, || {
        pin_cpu0();
        let s = nft_tests::packets::packet_socket("p0", 0, 0).expect("packet socket on p0");
        for f in frames {
            // SAFETY: f is valid for its length.
            let n = unsafe { libc::send(s.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
            assert_eq!(n, f.len() as isize, "send");
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })
    .unwrap();
}

pub fn pin_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// fw and peer joined by a veth pair f0/p0: 10.9.`net`.1 and .2, fd09:`net`::1 and ::2,
/// MACs 02:00:00:00:`net`:01 and :02, each side's neighbour entry for the other
/// permanent (packets leave at once: no neighbour resolution between a hook and TC).
pub struct Pair {
    pub fw: Netns,
    pub peer: Netns,
    /// f0's ifindex.
    pub f0: u32,
}

pub fn pair(prefix: &str, tag: &str, net: u8, mtu: Option<&str>) -> Pair {
    let fw = Netns::create_unique(prefix, &format!("{tag}fw")).unwrap();
    let peer = Netns::create_unique(prefix, &format!("{tag}peer")).unwrap();
    let (fw4, peer4) = (format!("10.9.{net}.1"), format!("10.9.{net}.2"));
    let (fw6, peer6) = (format!("fd09:{net}::1"), format!("fd09:{net}::2"));
    nft_tests::netns::veth_pair(
        (&fw, "f0", &format!("{fw4}/24")),
        (&peer, "p0", &format!("{peer4}/24")),
    )
    .unwrap();
    let mac = |host: u8| format!("02:00:00:00:{net:02x}:{host:02x}");
    for (ns, dev, own, a6) in [(&fw, "f0", 1, &fw6), (&peer, "p0", 2, &peer6)] {
        ip(&["-n", ns.name(), "link", "set", dev, "down"]);
        ip(&["-n", ns.name(), "link", "set", dev, "address", &mac(own)]);
        let mut up = vec!["-n", ns.name(), "link", "set", dev];
        if let Some(mtu) = mtu {
            up.extend(["mtu", mtu]);
        }
        up.push("up");
        ip(&up);
        ip(&[
            "-n",
            ns.name(),
            "addr",
            "add",
            &format!("{a6}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
    for (ns, dev, other, a4, a6) in [(&fw, "f0", 2, &peer4, &peer6), (&peer, "p0", 1, &fw4, &fw6)] {
        for a in [a4, a6] {
            let lladdr = mac(other);
            ip(&[
                "-n",
                ns.name(),
                "neigh",
                "replace",
                a,
                "lladdr",
                &lladdr,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
    }
    let link = Command::new("ip")
        .args(["-n", fw.name(), "-o", "link", "show", "f0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&link.stdout);
    let f0 = text.split(':').next().unwrap().trim().parse().unwrap();
    Pair { fw, peer, f0 }
}

/// Loads fw's rules: `rules4`/`rules6` with the restore tools, `nft` with nft, on the
/// kernel or through `daemon`.
pub fn load(
    fw: &Netns,
    bins: &Binaries,
    daemon: Option<&Daemon>,
    rules4: &str,
    rules6: &str,
    nft: &str,
) {
    let shim = daemon.map(|d| (d, bins.preload.as_path()));
    for (tool, args, rules) in [
        ("iptables-nft-restore", &[] as &[&str], rules4),
        ("ip6tables-nft-restore", &[], rules6),
        ("nft", &["-f", "-"], nft),
    ] {
        let out = run_client(fw, shim, tool, args, Some(rules));
        assert!(
            out.success(),
            "{tool}: {}\n{}",
            out.stderr,
            daemon.map(|d| d.log_tail(20)).unwrap_or_default()
        );
    }
}
