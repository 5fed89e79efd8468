//! Masking (layer 9, step 3; docs/masking.md): protected data (card
//! numbers, SSNs, IBANs, routing and account numbers, contact data,
//! secrets) is masked in every message an upstream sends before the client
//! or the audit log sees it, and in every client message before the audit
//! log records it (the upstream still gets the message as the client sent
//! it). The engine is `hoop_masking`; this module decides what in an MCP
//! message is masked, and fails closed: a message that cannot be masked is
//! withheld and the caller gets [`codes::MASKING_FAILED`] instead.

mod key;

use std::borrow::Cow;

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

/// The masking layer: one compiled profile (chosen per call by policy in a
/// later step; today every call uses `default`), or none when masking is
/// turned off in the config.
#[derive(Debug, Default)]
pub struct Masking {
    profile: Option<MaskingProfile>,
}

/// What masking a message found, for its audit event: `{"card": 1, …}`.
pub type MaskSummary = Option<Value>;

impl Masking {
    /// Masking turned off: every message passes as it is.
    pub fn off() -> Self {
        Self { profile: None }
    }

    pub fn new(profile: MaskingProfile) -> Self {
        Self {
            profile: Some(profile),
        }
    }

    /// The `default` profile of `profiles` (the built-in defaults when it
    /// is not configured), keyed with `key`.
    pub fn from_config(
        profiles: &std::collections::BTreeMap<String, ProfileConfig>,
        key: hoop_masking::HashKey,
    ) -> Result<Self, ProfileError> {
        let fallback = ProfileConfig::default();
        let config = profiles.get("default").unwrap_or(&fallback);
        // Every configured profile must compile, so a typo in one not yet
        // chosen by any rule is an error at start, not at the first call.
        for (name, p) in profiles {
            MaskingProfile::compile(name, p, key.clone())?;
        }
        Ok(Self::new(MaskingProfile::compile("default", config, key)?))
    }

    pub fn is_on(&self) -> bool {
        self.profile.is_some()
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
