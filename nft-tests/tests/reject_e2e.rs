//! `reject` seen by local applications, through the eBPF data plane and through the
//! kernel: a TCP connect and a UDP exchange on `lo` to rejected ports are refused at
//! once (a reset, an ICMP port unreachable) on both sides; an accepted port is not.
//! Needs root. Namespaces and the daemon are removed even when an assertion fails.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use nft_tests::bins::Binaries;
use nft_tests::daemon::Daemon;
use nft_tests::netns::Netns;
use nft_tests::nft::NftSide;
use nft_tests::packets::in_netns;

const RULESET: &str = "table inet filter {
  chain input {
    type filter hook input priority 0;
    tcp dport 9 reject with tcp reset
    udp dport 9 reject
    tcp dport 10 reject with icmpx admin-prohibited
  }
}
";

/// What a local client sees: (TCP to 9, UDP to 9, TCP to 10, TCP to 11).
fn client_view(ns: &Netns) -> Vec<ErrorKind> {
    in_netns(ns, || {
        let _listener = TcpListener::bind("127.0.0.1:11")?;
        let tcp = |port: u16| {
            let addr = ([127, 0, 0, 1], port).into();
            match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                Ok(_) => ErrorKind::Other,
                Err(e) => e.kind(),
            }
        };
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        udp.set_read_timeout(Some(Duration::from_secs(2)))?;
        udp.connect("127.0.0.1:9")?;
        udp.send(b"x")?;
        let mut buf = [0u8; 4];
        let udp_kind = match udp.recv(&mut buf) {
            Ok(_) => ErrorKind::Other,
            Err(e) => e.kind(),
        };
        Ok(vec![tcp(9), udp_kind, tcp(10), tcp(11)])
    })
    .unwrap()
}

/// Both sides of one test: a namespace loaded by the kernel, one by nftshimd.
struct Sides {
    kernel: Netns,
    shim: Netns,
    sides: [NftSide; 2],
    // Declared after the namespaces: dropped (killed) first, so it lets go of them.
    daemon: Daemon,
}

fn sides(tag: &str) -> Sides {
    nft_tests::cleanup::install_signal_cleanup();
    let bins = Binaries::for_tests();
    let kernel = Netns::create_unique(tag, "k").unwrap();
    let shim = Netns::create_unique(tag, "s").unwrap();
    let daemon = Daemon::start(&bins.nftshimd, "ebpf").unwrap();
    let limit = Duration::from_secs(15);
    let sides = daemon.sides(&bins.preload, (kernel.name(), shim.name()), "nft", limit);
    for ns in [&kernel, &shim] {
        let up = std::process::Command::new("ip")
            .args(["-n", ns.name(), "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success());
    }
    Sides {
        kernel,
        shim,
        sides,
        daemon,
    }
}

impl Sides {
    /// Loads `ruleset` on both sides; both must take it.
    fn load(&self, ruleset: &str) {
        for side in &self.sides {
            let out = side.run_program("nft".as_ref(), &["-f", "-"], Some(ruleset.as_bytes()));
            assert!(out.success(), "{out:?}\n{}", self.daemon.log_tail(20));
        }
    }
}

#[test]
fn local_clients_are_refused_as_by_the_kernel() {
    let s = sides("nftshim-rej");
    s.load(RULESET);
    let k = client_view(&s.kernel);
    assert_eq!(
        k,
        vec![
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionRefused,
            ErrorKind::HostUnreachable,
            ErrorKind::Other
        ],
        "the kernel's view"
    );
    assert_eq!(client_view(&s.shim), k, "{}", s.daemon.log_tail(20));
}

/// [`RULESET`] with chains on the answers' way out: the answers (to `lo`) meet output
/// as locally generated packets, not forward: the reset of TCP 9 is dropped there (the
/// client waits), the ICMP errors pass.
const WAY_OUT: &str = "table inet out {
  chain forward {
    type filter hook forward priority 0; policy drop;
  }
  chain output {
    type filter hook output priority 0; policy accept;
    tcp sport 9 counter drop
  }
}
";

#[test]
fn answers_meet_the_output_chains_as_the_kernels() {
    let s = sides("nftshim-rejo");
    s.load(&format!("{RULESET}{WAY_OUT}"));
    let k = client_view(&s.kernel);
    assert_eq!(
        k,
        vec![
            ErrorKind::TimedOut,
            ErrorKind::ConnectionRefused,
            ErrorKind::HostUnreachable,
            ErrorKind::Other
        ],
        "the kernel's view"
    );
    assert_eq!(client_view(&s.shim), k, "{}", s.daemon.log_tail(20));

    // An output chain that reads the answer's connection (which the kernel's answer
    // carries from the rejected packet) is refused, the whole batch with it.
    let ct = "table inet out2 {
  chain output {
    type filter hook output priority 0; policy accept;
    ct state invalid drop
  }
}
";
    let kernel = s.sides[0].run_program("nft".as_ref(), &["-f", "-"], Some(ct.as_bytes()));
    assert!(kernel.success(), "{kernel:?}");
    let shim = s.sides[1].run_program("nft".as_ref(), &["-f", "-"], Some(ct.as_bytes()));
    assert!(
        !shim.success() && shim.stderr.contains("Operation not supported"),
        "{shim:?}"
    );
    assert_eq!(client_view(&s.shim), k, "a refused batch changes nothing");
}
