//! `hoop-broker mask`: a profile tried offline on a document, to see what
//! the broker would deliver and record before putting it in front of
//! traffic.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use hoop_masking::{Context, HashKey, MaskReport, MaskingProfile, ProfileConfig};
use serde_json::{json, Value};

use super::{load_or_create_key, UNMASKED_KEYS};
use crate::config::BrokerConfig;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Reads JSON (masked as the broker masks a message) or text from FILE or stdin, prints it masked on stdout and what was found on stderr. Exit 0, or 2 when the input, config or profile is unusable.\n\nExamples:\n  echo '{\"card_number\": \"4111111111111111\"}' | hoop-broker mask\n  hoop-broker mask --config /etc/hoop/broker.toml --profile default result.json\n  hoop-broker mask --json < ticket.txt"
)]
pub struct MaskArgs {
    /// The document to mask (default: stdin).
    pub file: Option<PathBuf>,
    /// The profile: `[masking.profiles.NAME]` of the config; `default` is
    /// the built-in default unless the config changes it.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// The broker's config, for its profiles and masking key.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print one JSON object: the masked document, the profile and what
    /// was found by type.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: MaskArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => BrokerConfig::load(path)?,
        None => BrokerConfig::empty(),
    };
    let fallback = ProfileConfig::default();
    let profile_config = match config.masking.profiles.get(&args.profile) {
        Some(p) => p,
        None if args.profile == "default" => &fallback,
        None => {
            let known: Vec<&str> = config.masking.profiles.keys().map(String::as_str).collect();
            anyhow::bail!(
                "no masking profile `{}`{}; the config defines {}",
                args.profile,
                args.config
                    .as_ref()
                    .map(|c| format!(" in {}", c.display()))
                    .unwrap_or_default(),
                if known.is_empty() {
                    "none (pass --config FILE)".to_owned()
                } else {
                    known.join(", ")
                }
            );
        }
    };
    let (key, keyed) = key_of(&config)?;
    let profile = MaskingProfile::compile(&args.profile, profile_config, key)?;
    let mut input = Vec::new();
    match &args.file {
        Some(path) => {
            input =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("cannot read stdin")?;
        }
    }
    let text = String::from_utf8(input).context("the input is not UTF-8 text")?;
    let mut report = MaskReport::default();
    let masked = match serde_json::from_str::<Value>(&text) {
        Ok(mut v) => {
            profile
                .mask_value(&mut v, UNMASKED_KEYS, &mut report)
                .map_err(|e| anyhow::anyhow!("the broker would withhold this document: {e}"))?;
            v
        }
        Err(_) => Value::String(
            profile
                .mask_str(&text, Context::default(), &mut report)
                .unwrap_or(text),
        ),
    };
    let found: serde_json::Map<String, Value> = report
        .by_label(&profile)
        .into_iter()
        .map(|(label, n)| (label.to_owned(), Value::from(n)))
        .collect();
    if args.json {
        let out = json!({"profile": args.profile, "masked": masked, "found": found});
        println!("{out}");
    } else {
        match &masked {
            Value::String(s) => print!("{s}"),
            v => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        }
        let summary: Vec<String> = found.iter().map(|(k, v)| format!("{k} {v}")).collect();
        eprintln!(
            "profile {}: {}",
            args.profile,
            if summary.is_empty() {
                "nothing found".to_owned()
            } else {
                format!("masked {}", summary.join(", "))
            }
        );
        if !keyed {
            eprintln!("note: keyed hashes use a throwaway key here (no broker masking key found); they will not match the broker's");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The broker's masking key when the config says where it is (or where
/// the audit log is) and it exists; else a throwaway key. Never creates
/// the broker's key file.
fn key_of(config: &BrokerConfig) -> anyhow::Result<(HashKey, bool)> {
    let path = match &config.masking.key {
        Some(k) => Some(k.clone()),
        None => crate::run::default_masking_key(config).ok(),
    };
    match path {
        Some(p) if p.exists() => Ok((load_or_create_key(&p)?, true)),
        _ => {
            let bytes: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("no random bytes for a throwaway key"))?
                .expose();
            Ok((HashKey::from_bytes(bytes), false))
        }
    }
}
