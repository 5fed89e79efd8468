//! Masking (layer 9, step 3; docs/masking.md): protected data (card
//! numbers, SSNs, IBANs, routing and account numbers, contact data,
//! secrets) is masked in every message an upstream sends before the client
//! or the audit log sees it, and in every client message before the audit
//! log records it (the upstream still gets the message as the client sent
//! it). The engine is `hoop_masking`; this module decides what in an MCP
//! message is masked, and fails closed: a message that cannot be masked is
//! withheld and the caller gets [`codes::MASKING_FAILED`] instead.

pub mod command;
mod key;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hoop_masking::{Context, MaskReport, MaskingProfile, ProfileConfig, ProfileError};
use serde_json::{Map, Value};

use crate::mcp::error::{codes, McpError};
use crate::mcp::message::McpMessage;
use crate::mcp::server::ServerMessage;
pub use key::{load_or_create_key, KeyError};

/// Members never masked, wherever they sit: the JSON-RPC envelope, the
/// handles a client must send back exactly as it got them (cursors, task
/// ids, request states, URIs it reads next), and the schemas that describe
/// data rather than hold it (a schema's `properties.ssn` names a field).
pub const UNMASKED_KEYS: &[&str] = &[
    "jsonrpc",
    "id",
    "method",
    "progressToken",
    "cursor",
    "nextCursor",
    "taskId",
    "requestState",
    "protocolVersion",
    "mimeType",
    "uri",
    "uriTemplate",
    "inputSchema",
    "outputSchema",
    "requestedSchema",
];

/// Answers that declare what a server offers (its name, tools, prompts,
/// resources, schemas) rather than return data: delivered unmasked, so
/// schemas and names stay exact. Masking them would change a tool's schema
/// under the client.
const DECLARATIONS: &[&str] = &[
    "initialize",
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// The masking layer: every profile of the config, compiled at start, of
/// which the policy rule that lets a call through chooses one (`default`
/// unless the rule names another); or nothing when masking is turned off.
#[derive(Debug, Default)]
pub struct Masking {
    default: Masker,
    by_name: HashMap<String, Masker>,
}

/// One chosen profile, as the layers of one exchange apply it: cheap to
/// clone. Masking turned off is a `Masker` that passes everything.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    profile: Option<Arc<MaskingProfile>>,
}

/// What masking a message found, for its audit event: `{"card": 1, …}`.
pub type MaskSummary = Option<Value>;

impl Masking {
    /// Masking turned off: every message passes as it is.
    pub fn off() -> Self {
        Self::default()
    }

    /// Only `profile`, as `default`.
    pub fn new(profile: MaskingProfile) -> Self {
        Self {
            default: Masker::new(profile),
            by_name: HashMap::new(),
        }
    }

    /// Every profile of `profiles`, keyed with `key`; `default` is the
    /// built-in defaults where the config does not set it.
    pub fn from_config(
        profiles: &std::collections::BTreeMap<String, ProfileConfig>,
        key: hoop_masking::HashKey,
    ) -> Result<Self, ProfileError> {
        // Every configured profile compiles at start, so a typo in one no
        // rule chooses yet is an error now, not at the first call.
        let mut by_name = HashMap::new();
        for (name, p) in profiles {
            let profile = MaskingProfile::compile(name, p, key.clone())?;
            by_name.insert(name.clone(), Masker::new(profile));
        }
        let default = match by_name.remove("default") {
            Some(m) => m,
            None => Masker::new(MaskingProfile::compile(
                "default",
                &ProfileConfig::default(),
                key,
            )?),
        };
        Ok(Self { default, by_name })
    }

    pub fn is_on(&self) -> bool {
        self.default.profile.is_some()
    }

    /// The profile for calls no rule chooses one for, and for what is not
    /// a call (a listen stream, a malformed body).
    pub fn default_masker(&self) -> &Masker {
        &self.default
    }

    /// The profile a rule named (`None`: `default`). A name the config
    /// does not have fails closed: the call is refused, not delivered with
    /// a weaker profile. Start and reload check every name a policy uses
    /// ([`Masking::check_policy`]), so this is the last line only.
    pub fn chosen(&self, name: Option<&str>) -> Result<&Masker, McpError> {
        match name {
            None | Some("default") => Ok(&self.default),
            Some(_) if !self.is_on() => Ok(&self.default),
            Some(n) => self.by_name.get(n).ok_or_else(|| {
                McpError::new(
                    codes::MASKING_FAILED,
                    format!("the policy chooses masking profile '{n}', which the broker's config does not define; the call was not forwarded (add [masking.profiles.{n}] to the config)"),
                )
            }),
        }
    }

    /// Every masking profile `policy` names is one the config defines: a
    /// policy that names another is refused at start and on reload.
    pub fn check_policy(&self, policy: &crate::policy::Policy) -> Result<(), String> {
        if !self.is_on() {
            return Ok(());
        }
        let defined: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        check_profile_names(policy, &defined)
    }
}

/// Every masking profile `policy` names is `default` or in `defined`;
/// else an error naming each rule whose profile is missing.
pub fn check_profile_names(policy: &crate::policy::Policy, defined: &[&str]) -> Result<(), String> {
    let mut unknown: Vec<String> = policy
        .masking_profiles()
        .filter(|(_, p)| *p != "default" && !defined.contains(p))
        .map(|(rule, p)| format!("rule '{rule}' names masking profile '{p}'"))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let mut known: Vec<&str> = defined
        .iter()
        .copied()
        .filter(|d| *d != "default")
        .collect();
    known.push("default");
    known.sort_unstable();
    Err(format!(
        "{}, which the broker's config does not define (defined: {}); add [masking.profiles.NAME] to the config or fix the rule",
        unknown.join("; "),
        known.join(", ")
    ))
}

impl Masker {
    fn new(profile: MaskingProfile) -> Self {
        Self {
            profile: Some(Arc::new(profile)),
        }
    }

    /// The profile's name (`None`: masking is off).
    pub fn name(&self) -> Option<&str> {
        self.profile.as_ref().map(|p| p.name())
    }

    /// Masks one upstream message in place. `declares`: the request this
    /// answers is one of [`DECLARATIONS`] (only its answer is left as is;
    /// notifications on the same stream are masked). An error: the message
    /// must not be delivered.
    pub fn response(
        &self,
        m: &mut ServerMessage,
        answers_declaration: bool,
    ) -> Result<MaskSummary, McpError> {
        let Some(profile) = &self.profile else {
            return Ok(None);
        };
        if answers_declaration {
            return Ok(None);
        }
        if m.value().is_none() {
            return Err(withheld(
                "the upstream sent a message that is not JSON, so it cannot be masked",
            ));
        }
        let mut report = MaskReport::default();
        m.edit(|v| profile.mask_value(v, UNMASKED_KEYS, &mut report))
            .map_err(|e| withheld(&e.to_string()))?;
        Ok(summary(profile, &report))
    }

    /// A client message as the audit log records it: `None` when nothing
    /// in it needed masking (the forwarded bytes are recorded), else the
    /// masked bytes and what was found.
    pub fn client_message(&self, msg: &McpMessage) -> Option<(Bytes, Value)> {
        let profile = self.profile.as_ref()?;
        let params = msg.value.get("params")?;
        if params.as_object().is_some_and(Map::is_empty) {
            return None;
        }
        let mut copy = msg.value.clone();
        let mut report = MaskReport::default();
        let changed = match copy.get_mut("params") {
            Some(p) => profile.mask_value(p, UNMASKED_KEYS, &mut report),
            None => return None,
        };
        match changed {
            Ok(true) => {
                let bytes = Bytes::from(serde_json::to_vec(&copy).unwrap_or_default());
                Some((bytes, summary(profile, &report).unwrap_or(Value::Null)))
            }
            Ok(false) => None,
            // A request the engine cannot mask (a textual blob that is not
            // base64) is recorded without its params: never raw.
            Err(e) => {
                if let Some(o) = copy.as_object_mut() {
                    o.insert("params".into(), Value::String(format!("[MASKED: {e}]")));
                }
                let bytes = Bytes::from(serde_json::to_vec(&copy).unwrap_or_default());
                Some((bytes, Value::Null))
            }
        }
    }

    /// Text that is not a JSON-RPC message (a malformed body, an upstream's
    /// error page quoted in an error), masked as text.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match &self.profile {
            Some(p) => match p.mask_str(s, Context::default(), &mut MaskReport::default()) {
                Some(masked) => Cow::Owned(masked),
                None => Cow::Borrowed(s),
            },
            None => Cow::Borrowed(s),
        }
    }
}

/// Whether the answer to `method` is a declaration, left unmasked.
pub fn is_declaration(method: Option<&str>) -> bool {
    method.is_some_and(|m| DECLARATIONS.contains(&m))
}

fn summary(profile: &MaskingProfile, report: &MaskReport) -> MaskSummary {
    if report.is_empty() {
        return None;
    }
    let map: Map<String, Value> = report
        .by_label(profile)
        .into_iter()
        .map(|(label, n)| (label.to_owned(), Value::from(n)))
        .collect();
    Some(Value::Object(map))
}

fn withheld(why: &str) -> McpError {
    McpError::new(
        codes::MASKING_FAILED,
        format!("the broker withheld the upstream's answer because it could not mask it ({why}); nothing unmasked was delivered; the broker's audit log records this call"),
    )
}

#[cfg(test)]
mod tests;
