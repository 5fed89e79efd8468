//! Finding protected data in a string: one pass of one multi-pattern regex
//! (`regex-automata`'s meta engine, a lazy DFA) yields candidates, and only
//! candidates are validated (checksums, issuer ranges, context). A string
//! with no candidate costs that one pass and nothing else.

mod iban;
pub mod number;
mod secret;

use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use crate::checksum::Validator;
use crate::context::Context;
use number::{classify, DigitRun, Enabled};

/// The built-in detectors, in the order their ids are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    Card,
    Ssn,
    Iban,
    Aba,
    Account,
    Email,
    Phone,
    Secret,
}

impl Builtin {
    pub const ALL: [Builtin; 8] = [
        Self::Card,
        Self::Ssn,
        Self::Iban,
        Self::Aba,
        Self::Account,
        Self::Email,
        Self::Phone,
        Self::Secret,
    ];

    /// The detector's id: its index in [`Builtin::ALL`].
    pub fn id(self) -> usize {
        self as usize
    }

    /// Its name in configuration, reports and `[MASKED:…]`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::Ssn => "ssn",
            Self::Iban => "iban",
            Self::Aba => "routing",
            Self::Account => "account",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Secret => "secret",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// A span of a string to mask and the detector that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub detector: usize,
}

/// What a pattern of the combined regex stands for.
#[derive(Debug, Clone, Copy)]
enum Candidate {
    /// A digit run: classified by [`number::classify`].
    Number,
    Iban,
    Email,
    /// `(212) 555-0147`.
    PhoneParen,
    /// A PEM private key's BEGIN line: the finding runs to its END line.
    PemKey,
    /// A secret; `group`: only capture group 1 is the secret.
    Secret {
        group: bool,
    },
    /// A detector from configuration.
    Custom {
        detector: usize,
        validator: Option<Validator>,
        group: bool,
    },
}

/// A detector from configuration, compiled into the scanner.
#[derive(Debug, Clone)]
pub struct CustomPattern {
    pub detector: usize,
    pub pattern: String,
    pub validator: Option<Validator>,
}

/// The built-in candidate patterns, ASCII only (the regex is compiled
/// without Unicode classes: what it looks for is ASCII, and ASCII classes
/// keep the DFA small).
const NUMBER: &str = r"\b\d(?:[ \-]?\d){5,18}\b";
const IBAN: &str = r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b";
const EMAIL: &str = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}\b";
/// `(212) 555-0147`, and `212.555.0147` (dots are not a digit-run
/// separator: amounts and versions use them).
const PHONE_PAREN: &str = r"\(\d{3}\) ?\d{3}[ .\-]\d{4}\b|\b[2-9]\d{2}\.[2-9]\d{2}\.\d{4}\b";

/// Why a detector from configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("masking detector `{name}`: its pattern does not compile: {why}")]
pub struct PatternError {
    pub name: String,
    pub why: String,
}

/// The compiled scanner of one profile.
#[derive(Debug)]
pub struct Scanner {
    regex: Regex,
    candidates: Vec<Candidate>,
}

impl Scanner {
    /// The built-in patterns, then `custom` (which must have one capture
    /// group at most; with one, only the group is masked).
    pub fn new(
        custom: &[CustomPattern],
        names: &dyn Fn(usize) -> String,
    ) -> Result<Self, PatternError> {
        let mut patterns: Vec<String> = vec![
            NUMBER.into(),
            IBAN.into(),
            EMAIL.into(),
            PHONE_PAREN.into(),
            secret::PEM_BEGIN.into(),
        ];
        let mut candidates = vec![
            Candidate::Number,
            Candidate::Iban,
            Candidate::Email,
            Candidate::PhoneParen,
            Candidate::PemKey,
        ];
        for (pattern, group) in secret::PATTERNS {
            patterns.push((*pattern).into());
            candidates.push(Candidate::Secret { group: *group });
        }
        for c in custom {
            let compiled = build(&[c.pattern.as_str()]).map_err(|why| PatternError {
                name: names(c.detector),
                why,
            })?;
            let groups = compiled
                .group_info()
                .group_len(regex_automata::PatternID::ZERO);
            if groups > 2 {
                return Err(PatternError {
                    name: names(c.detector),
                    why: "at most one capture group (the part to mask)".into(),
                });
            }
            patterns.push(c.pattern.clone());
            candidates.push(Candidate::Custom {
                detector: c.detector,
                validator: c.validator,
                group: groups == 2,
            });
        }
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let regex = build(&refs).map_err(|why| PatternError {
            name: "built-in".into(),
            why,
        })?;
        Ok(Self { regex, candidates })
    }

    /// Every finding in `text`, in order, not overlapping, into `out`.
    /// `on`: whether detector id `i` is enabled.
    pub fn scan(&self, text: &str, ctx: Context<'_>, on: &[bool], out: &mut Vec<Finding>) {
        let enabled = |b: Builtin| on.get(b.id()).copied().unwrap_or(false);
        let numbers = Enabled {
            card: enabled(Builtin::Card),
            ssn: enabled(Builtin::Ssn),
            aba: enabled(Builtin::Aba),
            account: enabled(Builtin::Account),
            phone: enabled(Builtin::Phone),
        };
        let hay = text.as_bytes();
        let mut caps: Option<Captures> = None;
        let mut at = 0;
        // Each turn starts past the last one's start: bounded by the length.
        while at < hay.len() {
            let Some(m) = self.regex.search(&Input::new(hay).span(at..hay.len())) else {
                break;
            };
            let (start, end) = (m.start(), m.end());
            at = end.max(start + 1);
            // The patterns start and end on ASCII bytes; a span that does
            // not fall on char boundaries is not ours to cut.
            if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                continue;
            }
            let Some(candidate) = self.candidates.get(m.pattern().as_usize()) else {
                continue;
            };
            let found = match *candidate {
                Candidate::Number => DigitRun::parse(&text[start..end])
                    .and_then(|run| classify(text, start, end, &run, ctx, numbers))
                    .map(|b| (start, end, b.id())),
                Candidate::Iban => match iban::validated(&text[start..end]) {
                    Some(len) => {
                        // What follows the IBAN is searched again: the
                        // pattern may have run on into it.
                        at = start + len;
                        Some((start, start + len, Builtin::Iban.id()))
                    }
                    None => {
                        // Letters, digits and single spaces: an id before
                        // an IBAN or a card ("req=TX4584 IBAN AE83 …")
                        // matches too. Search again after its first word.
                        at = text[start..end]
                            .find(' ')
                            .map_or(end, |space| start + space + 1);
                        None
                    }
                },
                Candidate::Email => Some((start, end, Builtin::Email.id())),
                Candidate::PhoneParen => Some((start, end, Builtin::Phone.id())),
                Candidate::PemKey => {
                    Some((start, secret::pem_end(text, end), Builtin::Secret.id()))
                }
                Candidate::Secret { group } => {
                    let (s, e) = if group {
                        match self.group(hay, &m, &mut caps) {
                            Some(span) => span,
                            None => continue,
                        }
                    } else {
                        (start, end)
                    };
                    Some((s, e, Builtin::Secret.id()))
                }
                Candidate::Custom {
                    detector,
                    validator,
                    group,
                } => {
                    let (s, e) = if group {
                        match self.group(hay, &m, &mut caps) {
                            Some(span) => span,
                            None => continue,
                        }
                    } else {
                        (start, end)
                    };
                    let valid = text
                        .get(s..e)
                        .is_some_and(|t| validator.is_none_or(|v| v.check(t)));
                    valid.then_some((s, e, detector))
                }
            };
            if let Some((start, end, detector)) = found {
                if on.get(detector).copied().unwrap_or(false) && start < end {
                    out.push(Finding {
                        start,
                        end,
                        detector,
                    });
                }
            }
        }
    }

    /// Capture group 1 of the pattern that matched `m`, searched again
    /// within `m`'s span only.
    fn group(
        &self,
        hay: &[u8],
        m: &regex_automata::Match,
        caps: &mut Option<Captures>,
    ) -> Option<(usize, usize)> {
        let caps = caps.get_or_insert_with(|| self.regex.create_captures());
        let input = Input::new(hay)
            .span(m.range())
            .anchored(Anchored::Pattern(m.pattern()));
        self.regex.search_captures(&input, caps);
        let g = caps.get_group(1)?;
        Some((g.start, g.end))
    }
}

fn build(patterns: &[&str]) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(false),
        )
        .build_many(patterns)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
