//! A seeded link impairment model: what a lossy, noisy one-way link does to datagrams.
//!
//! Pure logic, no I/O: the UDP relay and the serial path feed every datagram (or COBS frame)
//! through [`Impairer::process`] and send whatever comes out, in that order. The same seed and
//! the same input give the same output on every machine (ChaCha8), so a failing end-to-end run
//! can be reproduced exactly.
//!
//! Per datagram, in this order: burst loss (Gilbert-Elliott), independent random loss,
//! corruption (bit flips in one random byte), duplication, reordering (held back by `k`
//! positions). Counters of every action are kept in [`ImpairStats`].

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A configuration value that is not a usable probability or count.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImpairError {
    #[error("{name} = {value} is not a probability: give a number from 0 to 1 (e.g. 0.1 for 10%)")]
    Probability { name: &'static str, value: f64 },
    #[error(
        "reorder probability {probability} needs a reorder depth of at least 1 position: set --reorder-depth"
    )]
    ReorderDepth { probability: f64 },
}

/// The two-state Gilbert-Elliott burst-loss channel.
///
/// The channel moves between a Good and a Bad state before each datagram; the datagram is then
/// lost with the loss probability of the current state. The mean length of a stay in Bad is
/// `1 / p_bad_to_good` datagrams, and the long-run share of time in Bad is
/// `p_good_to_bad / (p_good_to_bad + p_bad_to_good)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GilbertElliott {
    pub p_good_to_bad: f64,
    pub p_bad_to_good: f64,
    pub loss_in_good: f64,
    pub loss_in_bad: f64,
}

impl GilbertElliott {
    /// Bursts with a given mean length (in datagrams) that start with probability `p_start`
    /// per datagram; every datagram inside a burst is lost, none outside.
    pub fn bursts(p_start: f64, mean_len: f64) -> Self {
        let p_end = if mean_len > 1.0 { 1.0 / mean_len } else { 1.0 };
        Self {
            p_good_to_bad: p_start,
            p_bad_to_good: p_end,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// The long-run loss rate of this channel.
    pub fn expected_loss(&self) -> f64 {
        let total = self.p_good_to_bad + self.p_bad_to_good;
        if total <= 0.0 {
            return self.loss_in_good;
        }
        let bad = self.p_good_to_bad / total;
        bad * self.loss_in_bad + (1.0 - bad) * self.loss_in_good
    }
}

/// What the link does to datagrams. `Default` is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpairConfig {
    /// Seed of the random generator: the same seed replays the same impairments.
    pub seed: u64,
    /// Probability that a datagram is lost, independently of every other.
    pub loss: f64,
    /// Burst loss on top of `loss`, if any.
    pub burst: Option<GilbertElliott>,
    /// Probability that a datagram is delivered twice (back to back).
    pub duplicate: f64,
    /// Probability that a datagram is held back and delivered after `reorder_depth` others.
    pub reorder: f64,
    /// How many later datagrams overtake a held-back one.
    pub reorder_depth: usize,
    /// Probability that a datagram has 1 to 8 bits flipped in one random byte.
    pub corrupt: f64,
}

impl ImpairConfig {
    /// A perfect link with a seed.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Refuse probabilities outside [0, 1] (and NaN), naming the offending setting.
    pub fn validate(&self) -> Result<(), ImpairError> {
        let mut checks = vec![
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ];
        if let Some(ge) = &self.burst {
            checks.extend([
                ("burst p_good_to_bad", ge.p_good_to_bad),
                ("burst p_bad_to_good", ge.p_bad_to_good),
                ("burst loss_in_good", ge.loss_in_good),
                ("burst loss_in_bad", ge.loss_in_bad),
            ]);
        }
        for (name, value) in checks {
            if !(0.0..=1.0).contains(&value) {
                return Err(ImpairError::Probability { name, value });
            }
        }
        if self.reorder > 0.0 && self.reorder_depth == 0 {
            return Err(ImpairError::ReorderDepth {
                probability: self.reorder,
            });
        }
        Ok(())
    }
}

/// What the model did, datagram by datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImpairStats {
    /// Datagrams fed in.
    pub received: u64,
    /// Datagrams handed out (duplicates count twice).
    pub emitted: u64,
    /// Lost to independent random loss.
    pub lost_random: u64,
    /// Lost to the Gilbert-Elliott burst channel.
    pub lost_burst: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Held back and delivered late.
    pub reordered: u64,
    /// Delivered with flipped bits.
    pub corrupted: u64,
    /// Number of separate loss bursts (runs of consecutive burst-channel losses).
    pub bursts: u64,
}

impl ImpairStats {
    /// All datagrams lost, by either mechanism.
    pub fn lost(&self) -> u64 {
        self.lost_random + self.lost_burst
    }
}

/// A datagram held back for reordering, released after `remaining` others went out.
#[derive(Debug)]
struct Held {
    remaining: usize,
    bytes: Vec<u8>,
}

/// The impairment model. Feed datagrams in, send what comes out.
#[derive(Debug)]
pub struct Impairer {
    config: ImpairConfig,
    rng: ChaCha8Rng,
    in_bad_state: bool,
    last_was_burst_loss: bool,
    held: VecDeque<Held>,
    stats: ImpairStats,
}

impl Impairer {
    pub fn new(config: ImpairConfig) -> Result<Self, ImpairError> {
        config.validate()?;
        Ok(Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            in_bad_state: false,
            last_was_burst_loss: false,
            held: VecDeque::new(),
            stats: ImpairStats::default(),
        })
    }

    /// Change the impairments mid-run (e.g. a burst of loss, then a clean link), keeping the
    /// random stream and the counters.
    pub fn set_config(&mut self, config: ImpairConfig) -> Result<(), ImpairError> {
        config.validate()?;
        if config.burst.is_none() {
            self.in_bad_state = false;
        }
        self.config = config;
        Ok(())
    }

    pub fn config(&self) -> &ImpairConfig {
        &self.config
    }

    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Whether datagrams are being held back for reordering.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Run one datagram through the link; returns the datagrams to deliver now, in order.
    pub fn process(&mut self, mut datagram: Vec<u8>) -> Vec<Vec<u8>> {
        self.stats.received += 1;
        if self.burst_loses() {
            self.stats.lost_burst += 1;
            return self.release_after(0);
        }
        if self.chance(self.config.loss) {
            self.stats.lost_random += 1;
            return Vec::new();
        }
        if self.chance(self.config.corrupt) && self.corrupt(&mut datagram) {
            self.stats.corrupted += 1;
        }
        let copies = if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        if self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            // The duplicate (if any) goes now: it is the held copy that arrives late.
            let mut out = vec![datagram.clone(); copies - 1];
            let n = out.len();
            out.extend(self.release_after(n));
            self.held.push_back(Held {
                remaining: self.config.reorder_depth,
                bytes: datagram,
            });
            return self.emit(out);
        }
        let mut out = vec![datagram.clone(); copies - 1];
        out.push(datagram);
        let n = out.len();
        out.extend(self.release_after(n));
        self.emit(out)
    }

    /// Release every held-back datagram (the relay calls this when the link goes idle, so a
    /// held datagram is late, never lost).
    pub fn flush(&mut self) -> Vec<Vec<u8>> {
        let out: Vec<Vec<u8>> = self.held.drain(..).map(|h| h.bytes).collect();
        self.emit(out)
    }

    fn emit(&mut self, out: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        self.stats.emitted += out.len() as u64;
        out
    }

    /// `passed` datagrams just went out: count them against the held ones and return those
    /// whose wait is over (not yet counted as emitted).
    fn release_after(&mut self, passed: usize) -> Vec<Vec<u8>> {
        if passed == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.held.len());
        for mut h in self.held.drain(..) {
            h.remaining = h.remaining.saturating_sub(passed);
            if h.remaining == 0 {
                out.push(h.bytes);
            } else {
                keep.push_back(h);
            }
        }
        self.held = keep;
        out
    }

    /// Step the Gilbert-Elliott channel and decide whether this datagram is lost in it.
    fn burst_loses(&mut self) -> bool {
        let Some(ge) = self.config.burst else {
            self.last_was_burst_loss = false;
            return false;
        };
        let flip = if self.in_bad_state {
            ge.p_bad_to_good
        } else {
            ge.p_good_to_bad
        };
        if self.chance(flip) {
            self.in_bad_state = !self.in_bad_state;
        }
        let p = if self.in_bad_state {
            ge.loss_in_bad
        } else {
            ge.loss_in_good
        };
        let lost = self.chance(p);
        if lost && !self.last_was_burst_loss {
            self.stats.bursts += 1;
        }
        self.last_was_burst_loss = lost;
        lost
    }

    /// Flip 1 to 8 random bits of one random byte. False for an empty datagram.
    fn corrupt(&mut self, datagram: &mut [u8]) -> bool {
        if datagram.is_empty() {
            return false;
        }
        let at = self.rng.gen_range(0..datagram.len());
        let mask: u8 = self.rng.gen_range(1..=255);
        if let Some(b) = datagram.get_mut(at) {
            *b ^= mask;
        }
        true
    }

    /// A draw with probability `p`; draws nothing for 0 so that adding an impairment later does
    /// not shift the random stream of a perfect link (and 0 is never true).
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.rng.gen_bool(p.min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    fn run(cfg: ImpairConfig, n: u32) -> (Impairer, Vec<Vec<u8>>) {
        let mut imp = Impairer::new(cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(imp.process(dg(i)));
        }
        out.extend(imp.flush());
        (imp, out)
    }

    #[test]
    fn perfect_link_delivers_everything_in_order() {
        let (imp, out) = run(ImpairConfig::seeded(1), 1000);
        assert_eq!(out, (0..1000).map(dg).collect::<Vec<_>>());
        let s = imp.stats();
        assert_eq!((s.received, s.emitted, s.lost()), (1000, 1000, 0));
    }

    #[test]
    fn random_loss_rate_is_within_tolerance() {
        let cfg = ImpairConfig {
            loss: 0.10,
            ..ImpairConfig::seeded(42)
        };
        let (imp, out) = run(cfg, 100_000);
        let s = imp.stats();
        let rate = s.lost_random as f64 / 100_000.0;
        // 3 sigma of a binomial(100k, 0.1) is ~0.0028.
        assert!((rate - 0.10).abs() < 0.005, "loss rate {rate}");
        assert_eq!(out.len() as u64, 100_000 - s.lost_random);
        assert_eq!(s.emitted, out.len() as u64);
    }

    #[test]
    fn same_seed_same_output_other_seed_other_output() {
        let cfg = ImpairConfig {
            loss: 0.2,
            duplicate: 0.1,
            corrupt: 0.1,
            reorder: 0.1,
            reorder_depth: 3,
            ..ImpairConfig::seeded(7)
        };
        let (_, a) = run(cfg, 5000);
        let (_, b) = run(cfg, 5000);
        let (_, c) = run(ImpairConfig { seed: 8, ..cfg }, 5000);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn gilbert_elliott_bursts_have_the_expected_mean_length() {
        let ge = GilbertElliott::bursts(0.01, 8.0);
        let cfg = ImpairConfig {
            burst: Some(ge),
            ..ImpairConfig::seeded(3)
        };
        let n = 200_000u32;
        let (imp, out) = run(cfg, n);
        let s = imp.stats();
        let lost: Vec<bool> = {
            let delivered: std::collections::HashSet<Vec<u8>> = out.into_iter().collect();
            (0..n).map(|i| !delivered.contains(&dg(i))).collect()
        };
        // Measure the runs of consecutive losses directly from what was delivered.
        let mut runs = Vec::new();
        let mut cur = 0u64;
        for l in lost {
            if l {
                cur += 1;
            } else if cur > 0 {
                runs.push(cur);
                cur = 0;
            }
        }
        if cur > 0 {
            runs.push(cur);
        }
        let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
        assert!((mean - 8.0).abs() < 0.8, "mean burst length {mean}");
        assert_eq!(runs.len() as u64, s.bursts);
        let rate = s.lost_burst as f64 / n as f64;
        let expected = ge.expected_loss();
        assert!(
            (rate - expected).abs() < 0.2 * expected,
            "loss {rate} vs {expected}"
        );
    }

    #[test]
    fn duplication_and_corruption_counters_match_output() {
        let cfg = ImpairConfig {
            duplicate: 0.05,
            corrupt: 0.05,
            ..ImpairConfig::seeded(11)
        };
        let n = 20_000u32;
        // Index plus its complement: one corrupted byte can never turn into another original.
        let checked = |i: u32| [i.to_be_bytes(), (!i).to_be_bytes()].concat();
        let mut imp = Impairer::new(cfg).unwrap();
        let mut out = Vec::new();
        for i in 0..n {
            out.extend(imp.process(checked(i)));
        }
        let s = imp.stats();
        assert_eq!(out.len() as u64, n as u64 + s.duplicated);
        let originals: std::collections::HashSet<Vec<u8>> = (0..n).map(checked).collect();
        let altered = out.iter().filter(|d| !originals.contains(*d)).count() as u64;
        // A corrupted datagram that is duplicated shows up twice.
        assert!(altered >= s.corrupted && altered <= 2 * s.corrupted);
        assert!((s.duplicated as f64 / n as f64 - 0.05).abs() < 0.01);
        assert!((s.corrupted as f64 / n as f64 - 0.05).abs() < 0.01);
    }

    #[test]
    fn reordered_datagrams_arrive_exactly_k_positions_late() {
        let cfg = ImpairConfig {
            reorder: 0.05,
            reorder_depth: 3,
            ..ImpairConfig::seeded(5)
        };
        let n = 10_000u32;
        let (imp, out) = run(cfg, n);
        let s = imp.stats();
        assert!(s.reordered > 0);
        assert_eq!(out.len(), n as usize, "nothing lost or added");
        let mut sorted = out.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n).map(dg).collect::<Vec<_>>());
        let late = out
            .iter()
            .enumerate()
            .filter(|(pos, d)| {
                let i = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
                *pos > i
            })
            .count() as u64;
        assert_eq!(
            late, s.reordered,
            "every held datagram, and only those, arrives late"
        );
    }

    #[test]
    fn held_datagram_is_released_by_flush() {
        let cfg = ImpairConfig {
            reorder: 1.0,
            reorder_depth: 5,
            ..ImpairConfig::seeded(1)
        };
        let mut imp = Impairer::new(cfg).unwrap();
        assert!(imp.process(dg(1)).is_empty());
        assert!(imp.has_held());
        assert_eq!(imp.flush(), vec![dg(1)]);
        assert!(!imp.has_held());
    }

    #[test]
    fn invalid_settings_are_named() {
        let bad = ImpairConfig {
            loss: 1.5,
            ..ImpairConfig::default()
        };
        let err = Impairer::new(bad).unwrap_err();
        assert_eq!(
            err,
            ImpairError::Probability {
                name: "loss",
                value: 1.5
            }
        );
        assert!(err.to_string().contains("from 0 to 1"));
        let nan = ImpairConfig {
            corrupt: f64::NAN,
            ..ImpairConfig::default()
        };
        assert!(Impairer::new(nan).is_err());
        let depth = ImpairConfig {
            reorder: 0.1,
            ..ImpairConfig::default()
        };
        assert!(matches!(
            Impairer::new(depth),
            Err(ImpairError::ReorderDepth { .. })
        ));
    }

    #[test]
    fn set_config_switches_a_burst_on_and_off() {
        let mut imp = Impairer::new(ImpairConfig::seeded(9)).unwrap();
        imp.set_config(ImpairConfig {
            loss: 1.0,
            ..ImpairConfig::seeded(9)
        })
        .unwrap();
        assert!(imp.process(dg(1)).is_empty());
        imp.set_config(ImpairConfig::seeded(9)).unwrap();
        assert_eq!(imp.process(dg(2)), vec![dg(2)]);
        assert_eq!(imp.stats().lost_random, 1);
    }
}
