//! hoop's masking engine. A [`MaskingProfile`] is compiled once from a
//! [`ProfileConfig`]; [`MaskingProfile::mask_value`] then masks a JSON value
//! in place in one walk, and [`MaskingProfile::mask_str`] masks a string.
//!
//! Detectors validate what a pattern proposes: card numbers by Luhn and
//! issuer range, SSNs by the SSA's area/group/serial rules, IBANs by each
//! country's length and mod-97, routing numbers by the ABA checksum, and the
//! numbers that have no checksum (accounts, bare SSNs, national phone
//! numbers) only where the words before them or the JSON key above them say
//! what they are. The crate is sans-IO: no files, no clock, no globals; the
//! broker supplies the key for keyed hashes and decides what to do with a
//! value that cannot be masked (withhold it).

mod checksum;
mod context;
mod detect;
mod json;
mod profile;
mod report;
mod style;
mod text;

pub use checksum::Validator;
pub use context::Context;
pub use detect::{Builtin, Finding, PatternError};
pub use json::{textual, MaskError};
pub use profile::{
    default_style, DetectorConfig, FieldRuleConfig, MaskingProfile, ProfileConfig, ProfileError,
    DEFAULT_FIELDS,
};
pub use report::MaskReport;
pub use style::{HashKey, Style};
