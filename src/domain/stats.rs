//! Counts of send results per dimension value and time bucket, for bounce-rate monitoring.

use super::BounceType;

/// What a send result is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// Where the contact was acquired.
    Source,
    /// The campaign of the message.
    Campaign,
    /// The audience segment of the message.
    Segment,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Dimension; 3] = [Dimension::Source, Dimension::Campaign, Dimension::Segment];

    /// A stable one-byte code (for keys).
    pub fn code(self) -> u8 {
        match self {
            Dimension::Source => b's',
            Dimension::Campaign => b'c',
            Dimension::Segment => b'g',
        }
    }

    /// The dimension with code `c`.
    pub fn from_code(c: u8) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.code() == c)
    }

    /// Lower-case name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Source => "source",
            Dimension::Campaign => "campaign",
            Dimension::Segment => "segment",
        }
    }
}

/// Send results by outcome type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Every result (delivered or not).
    pub sent: u64,
    /// Delivered.
    pub delivered: u64,
    /// Hard bounces.
    pub hard: u64,
    /// Soft bounces.
    pub soft: u64,
    /// Blocks.
    pub block: u64,
    /// Complaints.
    pub complaint: u64,
    /// Unsubscribes (counted in `sent`, in no rate).
    pub unsubscribe: u64,
    /// Results (of every type) for addresses at domains marked accept-all at the time.
    pub to_accept_all: u64,
}

impl OutcomeCounts {
    /// One result of type `t`.
    pub fn one(t: BounceType) -> OutcomeCounts {
        let mut c = OutcomeCounts {
            sent: 1,
            ..OutcomeCounts::default()
        };
        match t {
            BounceType::Delivered => c.delivered = 1,
            BounceType::Hard => c.hard = 1,
            BounceType::Soft => c.soft = 1,
            BounceType::Block => c.block = 1,
            BounceType::Complaint => c.complaint = 1,
            BounceType::Unsubscribe => c.unsubscribe = 1,
        }
        c
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &OutcomeCounts) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.hard += other.hard;
        self.soft += other.soft;
        self.block += other.block;
        self.complaint += other.complaint;
        self.unsubscribe += other.unsubscribe;
        self.to_accept_all += other.to_accept_all;
    }

    /// Takes `other` from these counts (never below zero).
    pub fn subtract(&mut self, other: &OutcomeCounts) {
        self.sent = self.sent.saturating_sub(other.sent);
        self.delivered = self.delivered.saturating_sub(other.delivered);
        self.hard = self.hard.saturating_sub(other.hard);
        self.soft = self.soft.saturating_sub(other.soft);
        self.block = self.block.saturating_sub(other.block);
        self.complaint = self.complaint.saturating_sub(other.complaint);
        self.unsubscribe = self.unsubscribe.saturating_sub(other.unsubscribe);
        self.to_accept_all = self.to_accept_all.saturating_sub(other.to_accept_all);
    }

    /// Hard bounces per result sent (0 when nothing was sent).
    pub fn hard_bounce_rate(&self) -> f64 {
        ratio(self.hard, self.sent)
    }

    /// Complaints per result sent (0 when nothing was sent).
    pub fn complaint_rate(&self) -> f64 {
        ratio(self.complaint, self.sent)
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}
