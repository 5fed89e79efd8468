//! One compiled rule, and the method table every decision starts from:
//! which methods are protocol plumbing, which reach a tool, resource or
//! prompt, and which need a rule that names them.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use hoop_proto::{Identity, IdentityKind};

use super::cond::Condition;

/// Methods that work without a rule: the protocol's own plumbing. Catalog
/// lists are filtered by visibility elsewhere; `tasks/*` calls are bound to
/// their identity by the pipeline. Only a `deny` rule that lists one of them
/// in `methods` can refuse them.
pub const PLUMBING: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "logging/setLevel",
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/update",
    "tasks/cancel",
    "tasks/result",
];

/// What a client's message reaches: the key of the rule index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Tool,
    Resource,
    Prompt,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Tool, Category::Resource, Category::Prompt];

    /// The rule field that names items of this category.
    pub fn field(self) -> &'static str {
        match self {
            Self::Tool => "tools",
            Self::Resource => "resources",
            Self::Prompt => "prompts",
        }
    }

    /// The methods a rule covers when it names items of this category and
    /// lists no `methods`.
    pub fn default_methods(self) -> &'static [&'static str] {
        match self {
            Self::Tool => &["tools/call"],
            Self::Resource => &[
                "resources/read",
                "resources/subscribe",
                "resources/unsubscribe",
                "completion/complete",
            ],
            Self::Prompt => &["prompts/get", "completion/complete"],
        }
    }
}

/// The categories a method reaches. `completion/complete` completes a
/// prompt's or a resource template's arguments, and the request names
/// either, so it is judged against both.
pub fn categories_of(method: &str) -> &'static [Category] {
    match method {
        "tools/call" => &[Category::Tool],
        "prompts/get" => &[Category::Prompt],
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => &[Category::Resource],
        "completion/complete" => &[Category::Prompt, Category::Resource],
        _ => &[],
    }
}

/// Every method that reaches an item, i.e. the methods of a rule that names
/// neither methods nor items (`targets = ["prod-*"]`, `action = "deny"`).
pub const ITEM_METHODS: &[&str] = &[
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
];

pub fn is_plumbing(method: &str) -> bool {
    method.starts_with("notifications/") || PLUMBING.contains(&method)
}

pub use crate::mcp::message::has_arguments;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Allow,
    Approve,
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// A list of exact names and globs, matched case-sensitively.
#[derive(Debug)]
pub struct Patterns {
    /// Patterns without glob syntax, sorted for binary search.
    pub literals: Vec<String>,
    /// The other patterns, all matched at once.
    pub globs: Option<GlobSet>,
    pub glob_sources: Vec<String>,
}

/// Characters that make a pattern a glob.
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '[', ']', '{', '}', '\\'])
}

impl Patterns {
    /// `separator`: whether `*` stops at `/` (resource URIs; `**` crosses it).
    pub fn compile(raw: &[String], separator: bool) -> Result<Self, String> {
        let mut literals = Vec::new();
        let mut glob_sources = Vec::new();
        let mut set = GlobSetBuilder::new();
        for p in raw {
            if is_glob(p) {
                set.add(glob(p, separator)?);
                glob_sources.push(p.clone());
            } else {
                literals.push(p.clone());
            }
        }
        literals.sort();
        literals.dedup();
        let globs = if glob_sources.is_empty() {
            None
        } else {
            Some(
                set.build()
                    .map_err(|e| format!("globs do not compile: {e}"))?,
            )
        };
        Ok(Self {
            literals,
            globs,
            glob_sources,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        self.literals
            .binary_search_by(|l| l.as_str().cmp(s))
            .is_ok()
            || self.globs.as_ref().is_some_and(|g| g.is_match(s))
    }

    /// Whether every string matches (`*`, `**`): lets `policy check` see a
    /// rule that covers a whole dimension.
    pub fn matches_everything(&self) -> bool {
        self.glob_sources.iter().any(|g| g == "*" || g == "**")
    }
}

pub fn glob(p: &str, separator: bool) -> Result<globset::Glob, String> {
    GlobBuilder::new(p)
        .literal_separator(separator)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("glob `{p}` is invalid: {e}"))
}

/// Who a rule is about. Any listed field matching is enough.
#[derive(Debug, Default)]
pub struct Who {
    pub anyone: bool,
    /// Sorted.
    pub groups: Vec<String>,
    /// Sorted, exact subjects of any kind.
    pub subjects: Vec<String>,
    /// Sorted workload names; match workload identities `workload:<name>` only.
    pub workloads: Vec<String>,
    /// Sorted; empty = any issuer. A restriction, not a who on its own.
    pub issuers: Vec<String>,
}

fn contains(sorted: &[String], s: &str) -> bool {
    sorted.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
}

impl Who {
    pub fn matches(&self, id: &Identity) -> bool {
        if !self.issuers.is_empty() && !contains(&self.issuers, &id.issuer) {
            return false;
        }
        self.anyone
            || contains(&self.subjects, &id.subject)
            || id.groups.iter().any(|g| contains(&self.groups, g))
            || (id.kind == IdentityKind::Workload
                && id
                    .subject
                    .strip_prefix("workload:")
                    .is_some_and(|n| contains(&self.workloads, n)))
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Where it starts in the file (1-based), for messages.
    pub line: usize,
    pub who: Who,
    pub targets: Patterns,
    /// The methods it covers, sorted: `methods` as written, or derived from
    /// the item fields.
    pub methods: Vec<String>,
    pub tools: Option<Patterns>,
    pub resources: Option<Patterns>,
    pub prompts: Option<Patterns>,
    pub when: Option<Condition>,
    pub action: Action,
    pub reason: Option<String>,
    /// The masking profile for what the calls it lets through return;
    /// `None`: the broker's `default`.
    pub masking: Option<std::sync::Arc<str>>,
    /// Who releases a call this rule holds (`approve` rules only).
    pub approval: Option<std::sync::Arc<ApprovalSpec>>,
}

/// What an `approve` rule asks of the people who release its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSpec {
    /// Groups whose members may decide, sorted.
    pub approvers: Vec<String>,
    /// Distinct approvers needed to release a call.
    pub quorum: u32,
    /// How long a request waits for its decision, and how long a granted
    /// one-call approval stays usable, in seconds.
    pub expires_secs: u64,
    /// Only a person (not a workload token) may decide.
    pub human_approver: bool,
    /// The requester's reason when the client gives none (an MCP client
    /// has nowhere to type one); without it such a call is refused.
    pub default_reason: Option<String>,
    /// `None`: an approval releases the one call. `Some(secs)`: it
    /// releases the requester's calls of the tool on the target for that
    /// long after the decision.
    pub grant_window_secs: Option<u64>,
    /// With a window: only calls with the approved arguments.
    pub pin_arguments: bool,
}

impl Rule {
    pub fn items(&self, c: Category) -> Option<&Patterns> {
        match c {
            Category::Tool => self.tools.as_ref(),
            Category::Resource => self.resources.as_ref(),
            Category::Prompt => self.prompts.as_ref(),
        }
    }

    pub fn names_items(&self) -> bool {
        self.tools.is_some() || self.resources.is_some() || self.prompts.is_some()
    }

    pub fn covers_method(&self, method: &str) -> bool {
        contains(&self.methods, method)
    }

    /// Everything but the item name (the index has matched that already)
    /// and the condition.
    pub fn applies(&self, id: &Identity, target: &str, method: &str) -> bool {
        self.covers_method(method) && self.targets.matches(target) && self.who.matches(id)
    }
}
