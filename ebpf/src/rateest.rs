//! xt_RATEEST's rate estimators and xt_rateest's comparison, as the kernel computes
//! them (net/core/gen_estimator.c, net/netfilter/xt_rateest.c).
//!
//! An estimator counts the bytes (skb->len) and packets the RATEEST targets of its
//! name saw; a timer every `(HZ/4) << intvl_log` jiffies turns the counter deltas into
//! exponentially weighted averages (est_timer()), and readers see them shifted down
//! by 8 (gen_estimator_read()). All arithmetic is the kernel's u64 arithmetic,
//! wrapping where C wraps.

use std::time::Duration;

/// This kernel's CONFIG_HZ: the estimator's period is a whole number of jiffies,
/// `(HZ / 4) << intvl_log` (248 ms, not 250, at HZ=250).
pub const KERNEL_HZ: u64 = 250;

/// One estimator's state (`struct net_rate_estimator`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Estimator {
    /// `interval + 2`: the period is `250 ms << intvl_log` (in whole jiffies).
    intvl_log: u8,
    ewma_log: u8,
    last_bytes: u64,
    last_packets: u64,
    avbps: u64,
    avpps: u64,
}

impl Estimator {
    /// gen_new_estimator() for `--rateest-interval` (`interval`, -2..=3) and
    /// `--rateest-ewmalog` (`ewma_log`, 1..=30), with the counters as they are now
    /// (a new estimator's are 0). None where the kernel answers EINVAL.
    pub fn new(interval: i8, ewma_log: u8, bytes: u64, packets: u64) -> Option<Estimator> {
        if !(-2..=3).contains(&interval) || !(1..31).contains(&ewma_log) {
            return None;
        }
        Some(Estimator {
            intvl_log: (interval + 2) as u8,
            ewma_log,
            last_bytes: bytes,
            last_packets: packets,
            avbps: 0,
            avpps: 0,
        })
    }

    /// Whether both were made with the same interval and ewma_log.
    pub fn same_parameters(&self, other: &Estimator) -> bool {
        (self.intvl_log, self.ewma_log) == (other.intvl_log, other.ewma_log)
    }

    /// The timer's period: `(HZ/4) << intvl_log` jiffies.
    pub fn period(&self) -> Duration {
        let jiffies = (KERNEL_HZ / 4) << self.intvl_log;
        Duration::from_nanos(jiffies * 1_000_000_000 / KERNEL_HZ)
    }

    /// est_timer(): one period ends with the counters at `bytes` and `packets`.
    pub fn tick(&mut self, bytes: u64, packets: u64) {
        let shift = 10 - u32::from(self.intvl_log);
        let ewma = u32::from(self.ewma_log);
        let brate = bytes.wrapping_sub(self.last_bytes).wrapping_shl(shift);
        let brate = (brate >> ewma).wrapping_sub(self.avbps >> ewma);
        let rate = packets.wrapping_sub(self.last_packets).wrapping_shl(shift);
        let rate = (rate >> ewma).wrapping_sub(self.avpps >> ewma);
        self.avbps = self.avbps.wrapping_add(brate);
        self.avpps = self.avpps.wrapping_add(rate);
        self.last_bytes = bytes;
        self.last_packets = packets;
    }

    /// gen_estimator_read(): bytes and packets per second.
    pub fn read(&self) -> Sample {
        Sample {
            bps: self.avbps >> 8,
            pps: self.avpps >> 8,
        }
    }
}

/// `struct gnet_stats_rate_est64`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sample {
    pub bps: u64,
    pub pps: u64,
}

pub const MATCH_INVERT: u16 = 1 << 0;
pub const MATCH_ABS: u16 = 1 << 1;
pub const MATCH_REL: u16 = 1 << 2;
pub const MATCH_DELTA: u16 = 1 << 3;
pub const MATCH_BPS: u16 = 1 << 4;
pub const MATCH_PPS: u16 = 1 << 5;
pub const MODE_EQ: u16 = 1;
pub const MODE_LT: u16 = 2;
pub const MODE_GT: u16 = 3;

/// What `-m rateest` compares (`struct xt_rateest_match_info` without the names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Comparison {
    pub flags: u16,
    pub mode: u16,
    pub bps1: u32,
    pub pps1: u32,
    pub bps2: u32,
    pub pps2: u32,
}

impl Comparison {
    /// xt_rateest_mt() on the first estimator's sample and, with MATCH_REL, the
    /// second's (ignored otherwise).
    pub fn holds(&self, est1: Sample, est2: Sample) -> bool {
        let delta = self.flags & MATCH_DELTA != 0;
        // `info->x >= sample.x ? info->x - sample.x : 0`.
        let left = |info: u32, s: u64| u64::from(info).saturating_sub(s);
        let (bps1, pps1) = if delta {
            (left(self.bps1, est1.bps), left(self.pps1, est1.pps))
        } else {
            (est1.bps, est1.pps)
        };
        let (bps2, pps2) = if self.flags & MATCH_ABS != 0 {
            (u64::from(self.bps2), u64::from(self.pps2))
        } else if delta {
            (left(self.bps2, est2.bps), left(self.pps2, est2.pps))
        } else {
            (est2.bps, est2.pps)
        };
        let cmp = |a: u64, b: u64| match self.mode {
            MODE_LT => a < b,
            MODE_GT => a > b,
            MODE_EQ => a == b,
            // checkentry refuses other modes; the kernel's switch leaves `true`.
            _ => true,
        };
        let mut ret = true;
        if self.flags & MATCH_BPS != 0 {
            ret &= cmp(bps1, bps2);
        }
        if self.flags & MATCH_PPS != 0 {
            ret &= cmp(pps1, pps2);
        }
        ret != (self.flags & MATCH_INVERT != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// est_timer() by hand: 250 ms (intvl_log 0), ewma_log 1, 10 packets of 100 bytes
    /// in the first period, none after.
    #[test]
    fn ewma_of_one_burst_by_hand() {
        let mut e = Estimator::new(-2, 1, 0, 0).unwrap();
        assert_eq!(e.period(), Duration::from_millis(248));
        e.tick(1000, 10);
        // brate = 1000 << 10 = 1024000, >> 1 = 512000; avbps = 512000, bps = 2000.
        // rate = 10 << 10 = 10240, >> 1 = 5120; pps = 20.
        assert_eq!(e.read(), Sample { bps: 2000, pps: 20 });
        e.tick(1000, 10);
        // brate = 0 - (512000 >> 1): avbps = 256000 (bps 1000); avpps = 2560 (pps 10).
        assert_eq!(e.read(), Sample { bps: 1000, pps: 10 });
        for _ in 0..3 {
            e.tick(1000, 10);
        }
        // avpps 2560 -> 1280 -> 640 -> 320: pps 1; avbps 256000 -> 32000: bps 125.
        assert_eq!(e.read(), Sample { bps: 125, pps: 1 });
        e.tick(1000, 10);
        // avpps 160: pps 0 (160 >> 8).
        assert_eq!(e.read(), Sample { bps: 62, pps: 0 });
    }

    /// 8 s (intvl_log 5) and ewma_log 3: the shift is 10 - 5 = 5.
    #[test]
    fn longest_interval_and_steady_rate() {
        let mut e = Estimator::new(3, 3, 5, 1).unwrap();
        assert_eq!(e.period(), Duration::from_millis(7936));
        // 8 packets in a period: rate = 8 << 5 = 256, >> 3 = 32; avpps 32 (pps 0).
        e.tick(5 + 800, 9);
        assert_eq!(e.avpps, 32);
        assert_eq!(e.avbps, (800 << 5) >> 3);
        e.tick(5 + 1600, 17);
        // 32 + (32 - 4) = 60.
        assert_eq!(e.avpps, 60);
        assert_eq!(e.read().pps, 0);
        // A steady 8 packets a period (1/s) converges to avpps 256 - 2^3 + ... :
        // the fixed point of a += (256 >> 3) - (a >> 3) is a with a >> 3 == 32.
        let mut p = 17;
        for _ in 0..200 {
            p += 8;
            e.tick(5 + 1600, p);
        }
        assert_eq!(e.avpps >> 3, 32);
        assert_eq!(e.read().pps, 1);
    }

    /// The counters wrap as u64s, and the average's decrement wraps back.
    #[test]
    fn wrapping_counters() {
        let mut e = Estimator::new(0, 2, u64::MAX - 99, u64::MAX).unwrap();
        e.tick(100, 1);
        // 200 bytes and 2 packets over 1 s (shift 8): (200 << 8) >> 2 = 12800.
        assert_eq!(e.avbps, 12800);
        assert_eq!(e.avpps, (2 << 8) >> 2);
        assert_eq!(e.read(), Sample { bps: 50, pps: 0 });
    }

    #[test]
    fn kernel_bounds() {
        assert!(Estimator::new(-3, 1, 0, 0).is_none());
        assert!(Estimator::new(4, 1, 0, 0).is_none());
        assert!(Estimator::new(0, 0, 0, 0).is_none());
        assert!(Estimator::new(0, 31, 0, 0).is_none());
        assert!(Estimator::new(3, 30, 0, 0).is_some());
    }

    fn s(bps: u64, pps: u64) -> Sample {
        Sample { bps, pps }
    }

    #[test]
    fn absolute_comparisons() {
        let c = |flags, mode, bps2, pps2| Comparison {
            flags: MATCH_ABS | flags,
            mode,
            bps2,
            pps2,
            ..Comparison::default()
        };
        assert!(c(MATCH_BPS, MODE_LT, 1, 0).holds(s(0, 9), s(99, 99)));
        assert!(!c(MATCH_BPS, MODE_LT, 1, 0).holds(s(1, 0), s(0, 0)));
        assert!(c(MATCH_PPS, MODE_GT, 0, 0).holds(s(0, 1), s(0, 0)));
        assert!(!c(MATCH_PPS, MODE_GT, 0, 0).holds(s(5, 0), s(0, 0)));
        assert!(c(MATCH_PPS, MODE_EQ, 0, 5).holds(s(0, 5), s(0, 0)));
        // Both rates must hold; the inversion flips the conjunction.
        let both = c(MATCH_BPS | MATCH_PPS, MODE_GT, 10, 1);
        assert!(both.holds(s(11, 2), s(0, 0)));
        assert!(!both.holds(s(11, 1), s(0, 0)));
        let inv = c(MATCH_BPS | MATCH_PPS | MATCH_INVERT, MODE_GT, 10, 1);
        assert!(inv.holds(s(11, 1), s(0, 0)));
        // A u64 rate above any u32 constant.
        assert!(c(MATCH_BPS, MODE_GT, u32::MAX, 0).holds(s(1 << 32, 0), s(0, 0)));
    }

    #[test]
    fn delta_and_relative_comparisons() {
        // --rateest-delta --rateest RE1 --rateest-bps1 8bit(1) --rateest-lt --rateest-bps2 16bit(2):
        // left = max(1 - bps, 0) < 2 (bps2 absolute, not a delta).
        let c = Comparison {
            flags: MATCH_ABS | MATCH_DELTA | MATCH_BPS,
            mode: MODE_LT,
            bps1: 1,
            bps2: 2,
            ..Comparison::default()
        };
        assert!(c.holds(s(0, 0), s(0, 0)));
        let gt = Comparison { mode: MODE_GT, ..c };
        assert!(!gt.holds(s(0, 0), s(0, 0)));
        // 5 - 7 saturates at 0 on both sides: 0 == 0 for eq.
        let rel = Comparison {
            flags: MATCH_REL | MATCH_DELTA | MATCH_PPS,
            mode: MODE_EQ,
            pps1: 5,
            pps2: 3,
            ..Comparison::default()
        };
        assert!(rel.holds(s(0, 7), s(0, 4)));
        assert!(!rel.holds(s(0, 4), s(0, 4)));
        // Plain relative: est1 < est2.
        let lt = Comparison {
            flags: MATCH_REL | MATCH_BPS,
            mode: MODE_LT,
            ..Comparison::default()
        };
        assert!(lt.holds(s(1, 0), s(2, 0)));
        assert!(!lt.holds(s(2, 0), s(2, 0)));
    }
}
