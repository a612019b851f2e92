//! The health verdict of a source, campaign or segment from its bounce and complaint rates.
//!
//! Defaults: hard-bounce rate ≥ 2 % is WATCH and ≥ 5 % is PAUSE (5 % is where Amazon SES puts
//! an account under review); complaint rate ≥ 0.1 % is WATCH and ≥ 0.3 % is PAUSE. Below the
//! minimum sample the verdict is HEALTHY and flagged as too small a sample, so one bounce in
//! three sends does not pause a source.

use crate::domain::OutcomeCounts;

/// A verdict, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Rates within bounds.
    Healthy,
    /// A rate is high enough to watch.
    Watch,
    /// A rate is high enough to stop sending to this source.
    Pause,
}

/// The thresholds in force.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthThresholds {
    /// Hard-bounce rate (0..1) from which a source is watched.
    pub hard_watch: f64,
    /// Hard-bounce rate from which a source is paused.
    pub hard_pause: f64,
    /// Complaint rate from which a source is watched.
    pub complaint_watch: f64,
    /// Complaint rate from which a source is paused.
    pub complaint_pause: f64,
    /// Fewest results for a verdict other than HEALTHY.
    pub min_sample: u64,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            hard_watch: 0.02,
            hard_pause: 0.05,
            complaint_watch: 0.001,
            complaint_pause: 0.003,
            min_sample: 100,
        }
    }
}

/// A verdict with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthVerdict {
    /// The verdict.
    pub health: Health,
    /// Why, in words.
    pub reason: String,
    /// True when there were fewer results than the minimum sample.
    pub sample_too_small: bool,
}

impl HealthThresholds {
    /// The verdict for `counts`.
    pub fn evaluate(&self, counts: &OutcomeCounts) -> HealthVerdict {
        if counts.sent < self.min_sample {
            return HealthVerdict {
                health: Health::Healthy,
                reason: format!(
                    "{} results, fewer than the minimum sample of {}",
                    counts.sent, self.min_sample
                ),
                sample_too_small: true,
            };
        }
        let hard = counts.hard_bounce_rate();
        let complaint = counts.complaint_rate();
        let by_hard = grade(hard, self.hard_watch, self.hard_pause);
        let by_complaint = grade(complaint, self.complaint_watch, self.complaint_pause);
        let health = by_hard.max(by_complaint);
        let reason = match health {
            Health::Healthy => format!(
                "hard-bounce rate {:.2} % and complaint rate {:.3} % within bounds",
                hard * 100.0,
                complaint * 100.0
            ),
            _ if by_hard >= by_complaint => format!(
                "hard-bounce rate {:.2} % ≥ {:.2} %",
                hard * 100.0,
                if health == Health::Pause {
                    self.hard_pause
                } else {
                    self.hard_watch
                } * 100.0
            ),
            _ => format!(
                "complaint rate {:.3} % ≥ {:.3} %",
                complaint * 100.0,
                if health == Health::Pause {
                    self.complaint_pause
                } else {
                    self.complaint_watch
                } * 100.0
            ),
        };
        HealthVerdict {
            health,
            reason,
            sample_too_small: false,
        }
    }
}

fn grade(rate: f64, watch: f64, pause: f64) -> Health {
    if rate >= pause {
        Health::Pause
    } else if rate >= watch {
        Health::Watch
    } else {
        Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(sent: u64, hard: u64, complaint: u64) -> OutcomeCounts {
        OutcomeCounts {
            sent,
            hard,
            complaint,
            delivered: sent - hard - complaint,
            ..OutcomeCounts::default()
        }
    }

    #[test]
    fn thresholds_grade_hard_bounce_and_complaint_rates() {
        let t = HealthThresholds::default();
        assert_eq!(t.evaluate(&counts(1000, 19, 0)).health, Health::Healthy);
        assert_eq!(t.evaluate(&counts(1000, 20, 0)).health, Health::Watch);
        assert_eq!(t.evaluate(&counts(1000, 49, 0)).health, Health::Watch);
        assert_eq!(t.evaluate(&counts(1000, 50, 0)).health, Health::Pause);
        assert_eq!(t.evaluate(&counts(10_000, 0, 10)).health, Health::Watch);
        assert_eq!(t.evaluate(&counts(10_000, 0, 30)).health, Health::Pause);
        assert_eq!(t.evaluate(&counts(10_000, 250, 10)).health, Health::Watch);
    }

    #[test]
    fn a_small_sample_is_never_paused() {
        let t = HealthThresholds::default();
        let v = t.evaluate(&counts(3, 1, 0));
        assert_eq!(v.health, Health::Healthy);
        assert!(v.sample_too_small);
        assert_eq!(t.evaluate(&counts(100, 34, 0)).health, Health::Pause);
    }
}
