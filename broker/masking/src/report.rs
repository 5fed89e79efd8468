//! What masking found, counted per detector: for the audit event of the
//! message, the `hoop-broker mask` summary, and tests.

use crate::profile::MaskingProfile;

/// Findings per detector id of one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskReport {
    counts: Vec<u32>,
}

impl MaskReport {
    pub(crate) fn count(&mut self, detector: usize) {
        if self.counts.len() <= detector {
            self.counts.resize(detector + 1, 0);
        }
        self.counts[detector] = self.counts[detector].saturating_add(1);
    }

    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| *c == 0)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// (label, count) of each detector that found something, labels
    /// summed where several detectors share one (a field rule `card` and
    /// the card detector).
    pub fn by_label<'p>(&self, profile: &'p MaskingProfile) -> Vec<(&'p str, u32)> {
        let mut out: Vec<(&'p str, u32)> = Vec::new();
        for (id, n) in self.counts.iter().enumerate().filter(|(_, n)| **n > 0) {
            let label = profile.label(id);
            match out.iter_mut().find(|(l, _)| *l == label) {
                Some((_, total)) => *total = total.saturating_add(*n),
                None => out.push((label, *n)),
            }
        }
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}
