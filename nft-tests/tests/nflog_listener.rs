//! The listener side of nfnetlink_log (NFNL_SUBSYS_ULOG): what a log group's listener
//! sends (bind, copy mode, timeout, queue threshold, flags, unbind) gets the kernel's
//! answers from nftshimd, and an unmodified listener (tcpdump on an nflog interface)
//! starts as it does on the kernel. Needs root and the workspace's binaries.

use nft_tests::harness::*;

const REQUEST: u16 = 0x1;
const ACK: u16 = 0x4;
const ULOG_PACKET: u16 = 4 << 8;
const ULOG_CONFIG: u16 = 4 << 8 | 1;

const CMD: u16 = 1;
const MODE: u16 = 2;
const NLBUFSIZ: u16 = 3;
const TIMEOUT: u16 = 4;
const QTHRESH: u16 = 5;
const FLAGS: u16 = 6;

const BIND: u8 = 1;
const UNBIND: u8 = 2;
const PF_BIND: u8 = 3;
const PF_UNBIND: u8 = 4;

fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut v = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(value);
    v.resize((v.len() + 3) & !3, 0);
    v
}

fn msg(ty: u16, flags: u16, seq: u32, family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = vec![family, 0];
    payload.extend_from_slice(&group.to_be_bytes());
    payload.extend_from_slice(&attrs.concat());
    let mut v = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    v.extend_from_slice(&payload);
    v
}

fn config(seq: u32, family: u8, group: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
    msg(ULOG_CONFIG, REQUEST | ACK, seq, family, group, attrs)
}

fn mode(copy_mode: u8, range: u32) -> Vec<u8> {
    let mut v = range.to_be_bytes().to_vec();
    v.extend_from_slice(&[copy_mode, 0]);
    attr(MODE, &v)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// What libnetfilter_log and libpcap send, then the corner cases, on one socket.
fn datagrams() -> Vec<Vec<u8>> {
    vec![
        config(1, 0, 5, &[mode(2, 100)]),         // no instance: ENODEV
        config(2, 0, 5, &[attr(CMD, &[UNBIND])]), // ENODEV
        config(3, 2, 0, &[attr(CMD, &[PF_UNBIND])]),
        config(4, 2, 0, &[attr(CMD, &[PF_BIND])]),
        config(5, 200, 0, &[attr(CMD, &[PF_BIND])]), // EINVAL
        config(6, 0, 5, &[attr(CMD, &[BIND])]),
        config(7, 0, 5, &[attr(CMD, &[BIND])]), // EBUSY
        config(8, 0, 5, &[mode(2, 0xffff)]),
        config(9, 0, 5, &[mode(7, 100)]), // ignored
        config(10, 0, 5, &[attr(MODE, &[0, 0, 0, 100, 2])]), // ERANGE
        config(11, 0, 5, &[attr(TIMEOUT, &0u32.to_be_bytes())]),
        config(12, 0, 5, &[attr(QTHRESH, &1u32.to_be_bytes())]),
        config(13, 0, 5, &[attr(NLBUFSIZ, &100u32.to_be_bytes())]),
        config(14, 0, 5, &[attr(TIMEOUT, &[0, 0])]), // ERANGE
        config(15, 0, 5, &[attr(FLAGS, &3u16.to_be_bytes())]),
        config(16, 0, 5, &[attr(CMD, &[9])]), // ENOTSUPP
        config(17, 0, 6, &[attr(CMD, &[])]),  // ERANGE
        config(18, 0, 6, &[attr(CMD, &[BIND]), attr(7, b"abcd")]),
        msg(ULOG_PACKET, REQUEST | ACK, 19, 0, 5, &[]), // ENOTSUPP
        msg(ULOG_CONFIG + 1, REQUEST | ACK, 20, 0, 5, &[]), // EINVAL
        msg(ULOG_CONFIG, REQUEST, 21, 0, 7, &[attr(CMD, &[BIND])]), // silent
        config(22, 0, 7, &[attr(CMD, &[BIND])]),        // EBUSY: the silent bind happened
        config(23, 0, 5, &[attr(CMD, &[UNBIND])]),
        config(24, 0, 5, &[attr(CMD, &[UNBIND])]), // ENODEV
    ]
}

#[test]
fn listener_config_gets_the_kernels_answers() {
    let d = Differential::new("nflog");
    let raw = env!("CARGO_BIN_EXE_nl-raw");
    for ext_ack in [false, true] {
        let mut args = Vec::new();
        if ext_ack {
            args.push("--ext-ack".to_string());
        }
        args.extend(datagrams().iter().map(|g| hex(g)));
        let k = run(command(&d.kernel, None, raw, &args));
        let s = run(command(&d.shim_ns, Some(&d.shim), raw, &args));
        assert!(k.success() && k.stdout.contains("error=-16"), "{k:?}");
        assert_same("nl-raw", &k, &s);
    }
    // The instances went with the socket: a new one binds the same groups.
    let again = vec![hex(&config(1, 0, 5, &[attr(CMD, &[BIND])]))];
    let k = run(command(&d.kernel, None, raw, &again));
    let s = run(command(&d.shim_ns, Some(&d.shim), raw, &again));
    assert!(k.stdout.contains("error=0"), "{k:?}");
    assert_same("nl-raw", &k, &s);
}

/// tcpdump (libpcap's nflog support) binds its group and listens, through the
/// interposer as on the kernel.
#[test]
fn tcpdump_listens_on_an_nflog_group() {
    let d = Differential::new("nflog-tcpdump");
    let args: Vec<String> = ["2", "tcpdump", "-n", "-i", "nflog:5", "-c", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let k = run(command(&d.kernel, None, "timeout", &args));
    let s = run(command(&d.shim_ns, Some(&d.shim), "timeout", &args));
    // Nothing is logged, so both wait until `timeout` stops them.
    assert!(
        k.stderr.contains("listening on nflog:5"),
        "tcpdump on the kernel: {k:?}"
    );
    assert!(
        s.stderr.contains("listening on nflog:5"),
        "tcpdump through nftshim: {s:?}"
    );
    assert_eq!(k.exit, s.exit);
}
