//! Raw, partly malformed netlink datagrams get the kernel's answers from nftshimd,
//! and neither they nor garbage on the daemon's control socket stop it serving others.
//! Needs root and the workspace's binaries (`cargo build --workspace`).

use std::os::fd::AsRawFd;

use nft_tests::harness::*;

const REQUEST: u16 = 0x1;
const ACK: u16 = 0x4;
const DUMP: u16 = 0x300;
const CREATE: u16 = 0x400;
const GETTABLE: u16 = 10 << 8 | 1;
const NEWTABLE: u16 = 10 << 8;
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;

fn header(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut v = (len as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v
}

/// A message with a correct length field.
fn msg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = header(16 + payload.len(), ty, flags, seq);
    v.extend_from_slice(payload);
    v
}

/// nfgenmsg: family, version 0, res_id (big endian, as nft sends it).
fn nfgen(family: u8, res_id: u16) -> Vec<u8> {
    let mut v = vec![family, 0];
    v.extend_from_slice(&res_id.to_be_bytes());
    v
}

/// An attribute whose length field says `claimed` whatever its real size.
fn attr(kind: u16, claimed: u16, value: &[u8]) -> Vec<u8> {
    let mut v = claimed.to_ne_bytes().to_vec();
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn datagrams() -> Vec<Vec<u8>> {
    let ip = 2;
    vec![
        vec![1, 2, 3, 4, 5, 6, 7, 8], // shorter than a header
        cat(&[&header(100, GETTABLE, REQUEST | ACK, 1), &[0; 4]]), // longer than sent
        msg(GETTABLE, REQUEST | ACK, 2, &[]), // no nfgenmsg
        msg(
            GETTABLE,
            REQUEST | ACK,
            3,
            &cat(&[&nfgen(ip, 0), &attr(1, 200, b"abc\0")]),
        ),
        msg(
            NEWTABLE,
            REQUEST | ACK | CREATE,
            4,
            &cat(&[&nfgen(ip, 0), &attr(1, 6, b"t\0\0\0")]),
        ),
        msg(0x7f01, REQUEST | ACK, 5, &nfgen(ip, 0)), // unknown subsystem
        msg(GETTABLE, 0, 6, &nfgen(ip, 0)),           // not a request
        cat(&[
            // a batch whose NEWTABLE has an attribute overrunning the message
            &msg(BATCH_BEGIN, REQUEST, 7, &nfgen(0, 10)),
            &msg(
                NEWTABLE,
                REQUEST | CREATE,
                8,
                &cat(&[&nfgen(ip, 0), &attr(1, 40, b"tt\0\0")]),
            ),
            &msg(BATCH_END, REQUEST, 9, &nfgen(0, 10)),
        ]),
        cat(&[
            // a batch that never ends
            &msg(BATCH_BEGIN, REQUEST, 10, &nfgen(0, 10)),
            &msg(
                NEWTABLE,
                REQUEST | CREATE,
                11,
                &cat(&[&nfgen(ip, 0), &attr(1, 6, b"u\0\0\0")]),
            ),
        ]),
        cat(&[
            &msg(BATCH_BEGIN, REQUEST, 12, &nfgen(0, 10)),
            &header(8, 0, 0, 0),
        ]), // runt
        msg(BATCH_BEGIN, REQUEST | ACK, 13, &nfgen(0, 99)), // unknown subsystem id
        msg(GETTABLE, REQUEST | DUMP, 14, &nfgen(0, 0)),    // a valid dump at last
    ]
}

#[test]
fn malformed_datagrams_get_the_kernels_errors() {
    let d = Differential::new("raw");
    let mut args = vec!["--ext-ack".to_string()];
    args.extend(datagrams().iter().map(|g| hex(g)));
    let raw = env!("CARGO_BIN_EXE_nl-raw");
    let k = run(command(&d.kernel, None, raw, &args));
    let s = run(command(&d.shim_ns, Some(&d.shim), raw, &args));
    assert!(k.success() && k.stdout.contains("error=-22"), "{k:?}");
    assert_same("nl-raw", &k, &s);
    // Nothing of it was applied, and the daemon still serves this client's namespace
    // and others.
    assert_eq!(d.same(&["list", "ruleset"]).stdout, "");
    d.ok(&["add table ip t"]);
    d.same_ruleset();
    let other = test_netns("raw-other");
    assert!(nft(&other, Some(&d.shim), &["add table ip x"]).success());
    let listed = nft(&other, Some(&d.shim), &["list", "tables"]);
    assert_eq!(listed.stdout, "table ip x\n");
}

#[test]
fn garbage_on_the_control_socket_does_not_stop_the_daemon() {
    use nftshim_ipc::{Frame, Op};
    use nix::sys::socket::{
        connect, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    let mut shim = ShimDaemon::start();
    let records: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        vec![0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3],
        Frame {
            op: Op::Request,
            status: 0,
        }
        .encode(b"request before hello"),
        Frame {
            op: Op::Hello,
            status: 0,
        }
        .encode(&[1, 0]), // truncated, and no fds
        Frame {
            op: Op::Done,
            status: -1,
        }
        .encode(&[]), // a daemon-only op
        Frame {
            op: Op::Sync,
            status: 0,
        }
        .encode(&[]),
        vec![0; 4096],
    ];
    for record in &records {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        connect(
            fd.as_raw_fd(),
            &UnixAddr::new(shim.daemon.socket()).unwrap(),
        )
        .expect("connect");
        // The daemon may close on us at any point: only its survival matters here.
        let _ = send(fd.as_raw_fd(), record, MsgFlags::MSG_NOSIGNAL);
        let _ = send(
            fd.as_raw_fd(),
            &Frame {
                op: Op::Status,
                status: 0,
            }
            .encode(&[]),
            MsgFlags::MSG_NOSIGNAL,
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    shim.daemon.check_alive().expect("nftshimd survived");
    let ns = test_netns("ctl");
    let out = nft(&ns, Some(&shim), &["add table ip t"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(
        nft(&ns, Some(&shim), &["list", "tables"]).stdout,
        "table ip t\n"
    );
}
