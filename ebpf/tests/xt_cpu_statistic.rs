//! xt_cpu and xt_statistic's random mode in the kernel with BPF_PROG_TEST_RUN: the
//! CPU compared is the one the test run is on (the thread is pinned to each CPU in
//! turn), and the random draw falls below the probability as often as it says, with
//! the reference agreeing wherever the outcome does not depend on the draw. The nth
//! mode's counter follows statistic_mt()'s compare-and-exchange steps packet by packet.

mod common;

use common::frames::{self, addr};
use common::load_or_skip;
use nftshim_ebpf::fields::PacketFields;
use nftshim_ebpf::ir::{Action, Chain, L3Scope, Match, Nth, Program, Rule, Test, Verdict};
use nftshim_ebpf::loader::{LoadOptions, LoadedProgram, SkbMeta};
use nftshim_ebpf::maps::compile_program;
use nftshim_ebpf::reference::Reference;
use nftshim_ebpf::residual::{Headers, Insn, ResidualProgram};

fn program(rules: Vec<Rule>) -> Program {
    Program::single(Chain {
        scope: L3Scope::Inet,
        policy: Verdict::Accept,
        rules,
    })
}

fn load(program: &Program) -> Option<LoadedProgram> {
    load_or_skip(
        &compile_program(program).expect("program compiles"),
        LoadOptions::default(),
    )
}

fn residual(insn: Insn) -> Match {
    Match::is(Test::Residual(ResidualProgram { insns: vec![insn] }))
}

fn udp4() -> Vec<u8> {
    frames::udp(addr("10.0.0.1"), addr("10.0.0.2"), 9, 53)
}

/// What rules see in `frame` on `cpu`, drawing `random`.
fn fields(frame: &[u8], cpu: u32, random: u32) -> PacketFields {
    let mut f = frames::fields_of(frame, 0, 0);
    let network = frame[14..].to_vec();
    f.headers = Some(Headers {
        transport: Some(((network[0] & 0xf) as usize) * 4),
        network,
        protocol: 0x0800,
        cpu,
        random,
        ..Default::default()
    });
    f
}

/// Pins the calling thread to `cpu`; false when it may not run there.
fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it for
    // cpu < CPU_SETSIZE, and sched_setaffinity only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

#[test]
fn xt_cpu_compares_the_cpu_the_packet_runs_on() {
    // A counting rule for CPU 0, then "not CPU 1" accepts, then CPU 1 drops.
    let on = |cpu: u32, invert: bool| residual(Insn::XtCpu { cpu, invert });
    let p = program(vec![
        Rule::new(vec![on(0, false)], Action::Continue),
        Rule::new(vec![on(1, true)], Action::Accept),
        Rule::new(vec![on(1, false)], Action::Drop),
    ]);
    let Some(loaded) = load(&p) else { return };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The test's own thread: the pinning must not outlive it.
    std::thread::spawn(move || {
        let frame = udp4();
        let mut seen = 0;
        for cpu in 0..cpus.min(4) {
            if !pin_to(cpu) {
                continue;
            }
            seen += 1;
            let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
            let eval = Reference::new(&p)
                .unwrap()
                .evaluate(&fields(&frame, cpu as u32, 0))
                .unwrap();
            assert_eq!(run.verdict, eval.verdict, "cpu {cpu}");
            let want = if cpu == 1 {
                Verdict::Drop
            } else {
                Verdict::Accept
            };
            assert_eq!(run.verdict, want, "cpu {cpu}");
            assert_eq!(eval.counted.first() == Some(&0), cpu == 0, "{eval:?}");
        }
        assert!(seen > 0, "could not pin to any CPU");
    })
    .join()
    .unwrap();
}

#[test]
fn xt_statistic_random_extremes_agree_with_the_reference() {
    // Probability 0 never holds, 0x80000000 (1.0) always; inverted, the opposite.
    for (probability, invert, holds) in [
        (0, false, false),
        (0, true, true),
        (0x8000_0000, false, true),
        (0x8000_0000, true, false),
        (u32::MAX, false, true),
    ] {
        let p = program(vec![Rule::new(
            vec![residual(Insn::XtRandom {
                probability,
                invert,
            })],
            Action::Drop,
        )]);
        let Some(loaded) = load(&p) else { return };
        let frame = udp4();
        for random in [0, 0x7fff_ffff, u32::MAX] {
            let eval = Reference::new(&p)
                .unwrap()
                .evaluate(&fields(&frame, 0, random))
                .unwrap();
            let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
            assert_eq!(run.verdict, eval.verdict, "{probability:#x} {invert}");
            let want = if holds {
                Verdict::Drop
            } else {
                Verdict::Accept
            };
            assert_eq!(run.verdict, want, "{probability:#x} {invert}");
        }
    }
}

/// The draw falls below the probability as often as it says: 4000 packets at 1/2 and
/// at 1/4 land within 12 standard deviations of the mean (far from the other
/// probability, and from a draw that is not masked to 31 bits).
#[test]
fn xt_statistic_random_holds_at_the_given_rate() {
    for (probability, expected) in [(0x4000_0000u32, 2000.0f64), (0x2000_0000, 1000.0)] {
        let p = program(vec![Rule::new(
            vec![residual(Insn::XtRandom {
                probability,
                invert: false,
            })],
            Action::Drop,
        )]);
        let Some(loaded) = load(&p) else { return };
        let frame = udp4();
        let drops = (0..4000)
            .filter(|_| {
                loaded
                    .run_tc(&frame, SkbMeta::default(), 1)
                    .unwrap()
                    .verdict
                    == Verdict::Drop
            })
            .count() as f64;
        let sd = (4000.0 * (expected / 4000.0) * (1.0 - expected / 4000.0)).sqrt();
        assert!(
            (drops - expected).abs() < 12.0 * sd,
            "{drops} drops of 4000 at {probability:#x}"
        );
    }
}

/// statistic_mt()'s nth step, as the kernel runs it: the new counter value.
fn kernel_nth_step(counter: &mut u32, every: u32) -> bool {
    *counter = if *counter == every {
        0
    } else {
        counter.wrapping_add(1)
    };
    *counter == 0
}

/// [`Nth::hits`] (the closed form the BPF program computes from one atomic add) is the
/// kernel's step sequence, from starting counts below, at and above `every`.
#[test]
fn nth_closed_form_follows_the_kernel_steps() {
    for (every, count) in [
        (0, 0),
        (4, 0),
        (4, 2),
        (4, 4),
        (1, 7),
        (2, u32::MAX - 1),
        (3, u32::MAX),
        (u32::MAX, 5),
        (u32::MAX - 1, u32::MAX),
    ] {
        let nth = Nth {
            every,
            count,
            state: None,
        };
        let mut counter = count;
        for k in 1..=40u64 {
            assert_eq!(
                nth.hits(k),
                kernel_nth_step(&mut counter, every),
                "every {every}, count {count}, packet {k}"
            );
        }
    }
}

/// The BPF program's nth counter, packet by packet, against the reference and the
/// kernel's steps: `--every 5 --packet 2` (every 4, count 2), inverted, and a count
/// above every that climbs to the wrap first; each rule keeps its own counter.
#[test]
fn nth_counts_every_packet_that_reaches_the_match() {
    let nth = |every, count| Nth {
        every,
        count,
        state: None,
    };
    let cases = [nth(4, 2), nth(2, u32::MAX - 1)];
    // First rule: hit, counted and continue; second: not a hit (inverted) drops.
    let p = program(vec![
        Rule::new(vec![Match::is(Test::Nth(cases[0]))], Action::Continue),
        Rule::new(vec![Match::not(Test::Nth(cases[1]))], Action::Drop),
    ]);
    let Some(loaded) = load(&p) else { return };
    let mut reference = Reference::new(&p).unwrap();
    let frame = udp4();
    let (mut first, mut second) = (2u32, u32::MAX - 1);
    for k in 1..=20 {
        let run = loaded.run_tc(&frame, SkbMeta::default(), 1).unwrap();
        let eval = reference.evaluate(&fields(&frame, 0, 0)).unwrap();
        assert_eq!(run.verdict, eval.verdict, "packet {k}");
        let counted = kernel_nth_step(&mut first, 4);
        let hit = kernel_nth_step(&mut second, 2);
        let want = if hit { Verdict::Accept } else { Verdict::Drop };
        assert_eq!(run.verdict, want, "packet {k}");
        assert_eq!(
            eval.counted.first() == Some(&0),
            counted,
            "packet {k}: {eval:?}"
        );
    }
}
