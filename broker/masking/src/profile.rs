//! A masking profile: which detectors are on and in which style, which
//! JSON keys are masked whatever they hold, and the detectors a
//! configuration adds. [`ProfileConfig`] is what a configuration file says;
//! [`MaskingProfile`] is it compiled, once, at start or reload.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::checksum::Validator;
use crate::context::normalize_key;
use crate::detect::{Builtin, CustomPattern, PatternError, Scanner};
use crate::style::{HashKey, Style};

/// A profile as configured (TOML or JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Style per built-in detector (`card`, `ssn`, `iban`, `routing`,
    /// `account`, `email`, `phone`, `secret`); those left out keep the
    /// default ([`default_style`]).
    #[serde(default)]
    pub styles: BTreeMap<String, Style>,
    /// Keys whose values are masked whatever they hold.
    #[serde(default)]
    pub fields: Vec<FieldRuleConfig>,
    /// Whether the default field rules ([`DEFAULT_FIELDS`]) apply too.
    #[serde(default = "yes")]
    pub default_fields: bool,
    /// Detectors of one's own.
    #[serde(default)]
    pub detectors: Vec<DetectorConfig>,
}

fn yes() -> bool {
    true
}

/// `keys = ["dob", "date_of_birth"]`, masked as `label` in `style`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleConfig {
    pub keys: Vec<String>,
    pub label: String,
    #[serde(default = "redact")]
    pub style: Style,
}

fn redact() -> Style {
    Style::Redact
}

/// A detector of one's own: a regex (ASCII classes; with one capture
/// group, only the group is masked) and an optional checksum.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub name: String,
    pub pattern: String,
    #[serde(default)]
    pub validator: Option<Validator>,
    #[serde(default = "redact")]
    pub style: Style,
}

/// The style of a built-in detector a profile does not mention. Cards,
/// accounts, IBANs and phones keep their last four (enough to tell a
/// customer which one); SSNs, routing numbers and secrets are redacted;
/// addresses become keyed hashes, so one person's mail can be followed
/// through a log without being read.
pub fn default_style(b: Builtin) -> Style {
    match b {
        Builtin::Card | Builtin::Account | Builtin::Iban | Builtin::Phone => Style::Partial,
        Builtin::Ssn | Builtin::Aba | Builtin::Secret => Style::Redact,
        Builtin::Email => Style::Hash,
    }
}

/// Keys masked whatever they hold, unless a profile sets
/// `default_fields = false`: (label, keys).
pub const DEFAULT_FIELDS: &[(&str, &[&str])] = &[
    ("ssn", &["ssn", "social_security_number", "tax_id"]),
    ("dob", &["dob", "date_of_birth", "birth_date", "birthdate"]),
    (
        "card",
        &[
            "card_number",
            "pan",
            "cvv",
            "cvc",
            "card_verification_value",
        ],
    ),
    ("account", &["account_number", "acct_number", "account_no"]),
    ("routing", &["routing_number", "aba_number"]),
    (
        "secret",
        &[
            "password",
            "passwd",
            "pin",
            "secret",
            "client_secret",
            "api_key",
            "access_token",
            "refresh_token",
            "private_key",
        ],
    ),
];

/// One detector of a compiled profile: built-in, configured, or a field
/// rule; its id is its index.
#[derive(Debug, Clone)]
pub(crate) struct DetectorSpec {
    pub label: String,
    pub style: Style,
    pub secret: bool,
}

/// Why a profile does not compile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("masking profile `{profile}`: `{name}` is not a detector; the built-in ones are card, ssn, iban, routing, account, email, phone, secret")]
    UnknownDetector { profile: String, name: String },
    #[error("masking profile `{profile}`: {source}")]
    Pattern {
        profile: String,
        #[source]
        source: PatternError,
    },
    #[error("masking profile `{profile}`: detector name `{name}` is used twice")]
    Duplicate { profile: String, name: String },
    #[error("masking profile `{profile}`: a field rule with label `{label}` lists no keys")]
    NoKeys { profile: String, label: String },
}

/// A compiled profile: immutable, shared by every exchange that uses it.
#[derive(Debug)]
pub struct MaskingProfile {
    pub(crate) name: String,
    pub(crate) scanner: Scanner,
    pub(crate) detectors: Vec<DetectorSpec>,
    /// Per detector id: enabled.
    pub(crate) on: Vec<bool>,
    /// Normalized key → field-rule detector id.
    pub(crate) fields: Vec<(String, usize)>,
    pub(crate) key: HashKey,
}

impl MaskingProfile {
    pub fn compile(name: &str, config: &ProfileConfig, key: HashKey) -> Result<Self, ProfileError> {
        for n in config.styles.keys() {
            if Builtin::from_name(n).is_none() {
                return Err(ProfileError::UnknownDetector {
                    profile: name.into(),
                    name: n.clone(),
                });
            }
        }
        let mut detectors: Vec<DetectorSpec> = Builtin::ALL
            .iter()
            .map(|b| DetectorSpec {
                label: b.name().into(),
                style: config
                    .styles
                    .get(b.name())
                    .copied()
                    .unwrap_or(default_style(*b)),
                secret: *b == Builtin::Secret,
            })
            .collect();
        let mut custom = Vec::new();
        for d in &config.detectors {
            if detectors.iter().any(|s| s.label == d.name) {
                return Err(ProfileError::Duplicate {
                    profile: name.into(),
                    name: d.name.clone(),
                });
            }
            custom.push(CustomPattern {
                detector: detectors.len(),
                pattern: d.pattern.clone(),
                validator: d.validator,
            });
            detectors.push(DetectorSpec {
                label: d.name.clone(),
                style: d.style,
                secret: false,
            });
        }
        let mut fields = Vec::new();
        let defaults = DEFAULT_FIELDS
            .iter()
            .filter(|_| config.default_fields)
            .map(|(label, keys)| {
                let keys = keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
                // A default rule takes the style its label's detector has
                // in this profile (partial cards stay partial under
                // `card_number`).
                let style =
                    Builtin::from_name(label).map_or(Style::Redact, |b| detectors[b.id()].style);
                (label.to_string(), keys, style)
            })
            .collect::<Vec<_>>();
        let configured = config
            .fields
            .iter()
            .map(|f| (f.label.clone(), f.keys.clone(), f.style));
        // Configured rules first: a key they name takes their style.
        for (label, keys, style) in configured.chain(defaults) {
            if keys.is_empty() {
                return Err(ProfileError::NoKeys {
                    profile: name.into(),
                    label,
                });
            }
            // A field rule cannot be turned off by its detector's style:
            // the key says what the value is.
            let style = if style == Style::Off {
                Style::Redact
            } else {
                style
            };
            let id = detectors.len();
            detectors.push(DetectorSpec {
                secret: label == "secret",
                label,
                style,
            });
            for k in keys {
                let k = normalize_key(&k);
                if !fields.iter().any(|(f, _)| *f == k) {
                    fields.push((k, id));
                }
            }
        }
        let on = detectors.iter().map(|d| d.style != Style::Off).collect();
        let labels: Vec<String> = detectors.iter().map(|d| d.label.clone()).collect();
        let scanner = Scanner::new(&custom, &|id| labels.get(id).cloned().unwrap_or_default())
            .map_err(|source| ProfileError::Pattern {
                profile: name.into(),
                source,
            })?;
        Ok(Self {
            name: name.into(),
            scanner,
            detectors,
            on,
            fields,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label of detector `id` (`card`, a configured name, a field
    /// rule's label).
    pub fn label(&self, id: usize) -> &str {
        self.detectors.get(id).map_or("", |d| d.label.as_str())
    }
}
