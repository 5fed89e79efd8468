//! Masking a string: the scanner's findings, each replaced by its
//! detector's style. A string with no finding is not copied.

use crate::context::Context;
use crate::detect::Finding;
use crate::profile::MaskingProfile;
use crate::report::MaskReport;
use crate::style::write_masked;

impl MaskingProfile {
    /// `text` with every finding masked, or `None` when nothing was found
    /// (the caller keeps the original and allocates nothing).
    pub fn mask_str(
        &self,
        text: &str,
        ctx: Context<'_>,
        report: &mut MaskReport,
    ) -> Option<String> {
        let findings = self.findings(text, ctx);
        if findings.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 16 * findings.len());
        let mut last = 0;
        for f in &findings {
            // `findings` keeps only ordered, non-overlapping spans on char
            // boundaries, so these slices are there.
            let (Some(before), Some(value)) = (text.get(last..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            self.write(&mut out, value, f.detector);
            report.count(f.detector);
            last = f.end;
        }
        out.push_str(text.get(last..).unwrap_or(""));
        Some(out)
    }

    /// What [`MaskingProfile::mask_str`] would replace in `text`, in order
    /// and without overlaps, each with its detector (its label is
    /// [`MaskingProfile::label`]): for measuring the detectors against a
    /// labelled corpus, and for tools that show what would be masked.
    pub fn findings(&self, text: &str, ctx: Context<'_>) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        self.scanner.scan(text, ctx, &self.on, &mut findings);
        // Findings come in order; one that starts inside the previous one
        // (a group searched again) is dropped.
        let mut last = 0;
        findings.retain(|f| {
            let keep = f.start >= last && text.get(f.start..f.end).is_some();
            if keep {
                last = f.end;
            }
            keep
        });
        findings
    }

    /// The whole of `value`, masked as detector `id` (a field rule) says.
    pub(crate) fn masked_whole(&self, value: &str, id: usize) -> String {
        let mut out = String::with_capacity(24);
        self.write(&mut out, value, id);
        out
    }

    fn write(&self, out: &mut String, value: &str, id: usize) {
        match self.detectors.get(id) {
            Some(d) => write_masked(out, value, &d.label, d.style, &self.key, d.secret),
            None => out.push_str("[MASKED]"),
        }
    }
}
