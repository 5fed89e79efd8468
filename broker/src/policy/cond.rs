//! `when` conditions: CEL expressions (the `cel` crate) compiled once when
//! the policy loads and run only for rules the index already picked.
//!
//! A condition sees five variables: `args` (the call's arguments object,
//! `{}` when there are none), `identity` (`subject`, `email`, `groups`,
//! `issuer`, `kind`), `target`, `method` and `name`. The values are built at
//! most once per decision ([`Scope`]) and shared by every condition it runs.
//! A condition must evaluate to a boolean; anything else, and any runtime
//! error, is an error that the caller of [`Condition::eval`] turns into a
//! refusal — an error never allows.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::{Context, Env, Program, Value as CelValue};
use hoop_proto::{Identity, IdentityKind};
use serde_json::Value as Json;

/// The variables a condition may read; anything else is refused at load,
/// so a typo (`arg.amount`) is a load error, not a condition that always fails.
pub const VARIABLES: [&str; 5] = ["args", "identity", "target", "method", "name"];

/// Longest `when` source accepted. CEL has no loops beyond comprehensions
/// over its inputs, so bounding the source bounds the work per evaluation.
pub const MAX_SOURCE_LEN: usize = 2048;

/// Deepest argument nesting converted for a condition. Deeper arguments make
/// every condition that reads `args` fail (and so refuse), rather than
/// letting a crafted message cost unbounded conversion work.
const MAX_ARGS_DEPTH: usize = 32;

/// Most JSON values (all levels together) converted for a condition.
const MAX_ARGS_NODES: usize = 20_000;

/// A compiled `when`.
pub struct Condition {
    pub source: String,
    program: Program,
    /// Whether the expression reads `args`: such a condition cannot be
    /// judged in the listing phase, where no arguments exist yet.
    pub reads_args: bool,
    /// Whether it reads nothing at all (a constant), for `policy check`.
    pub is_constant: bool,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Condition {
    /// Compiles `source`; the error text is meant to follow "`when` ".
    pub fn compile(env: &Env, source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("is empty".into());
        }
        if source.len() > MAX_SOURCE_LEN {
            return Err(format!(
                "is {} bytes long; at most {MAX_SOURCE_LEN} are allowed",
                source.len()
            ));
        }
        let program = env
            .compile(source)
            .map_err(|e| format!("does not compile: {e}"))?;
        let mut free = Vec::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(unknown) = free.iter().find(|v| !VARIABLES.contains(&v.as_str())) {
            return Err(format!(
                "reads unknown variable `{unknown}` (known: {})",
                VARIABLES.join(", ")
            ));
        }
        Ok(Self {
            source: source.to_owned(),
            reads_args: free.iter().any(|v| v == "args"),
            is_constant: free.is_empty(),
            program,
        })
    }

    /// Runs the condition. `Err` carries a message for the caller.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<bool, String> {
        if self.reads_args {
            if let Some(e) = &scope.args_error {
                return Err(e.clone());
            }
        }
        match self.program.execute(&scope.ctx) {
            Ok(CelValue::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "`{}` gave {:?}, not a boolean",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("`{}` failed: {e}", self.source)),
        }
    }
}

/// The variables `e` reads that no comprehension inside it binds (the cel
/// crate's own `references()` also reports the `i` of `all(i, …)`).
fn free_variables(e: &IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(n) => {
            // `@`-names are the crate's own accumulators.
            if !n.starts_with('@') && !bound.contains(n) && !out.contains(n) {
                out.push(n.clone());
            }
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_variables(t, bound, out);
            }
            for a in &c.args {
                free_variables(a, bound, out);
            }
        }
        Expr::Select(s) => free_variables(&s.operand, bound, out),
        Expr::List(l) => {
            for x in &l.elements {
                free_variables(x, bound, out);
            }
        }
        Expr::Map(m) => entries(&m.entries, bound, out),
        Expr::Struct(s) => entries(&s.entries, bound, out),
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let before = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            free_variables(&c.loop_cond, bound, out);
            free_variables(&c.loop_step, bound, out);
            free_variables(&c.result, bound, out);
            bound.truncate(before);
        }
    }
}

fn entries(es: &[IdedEntryExpr], bound: &mut Vec<String>, out: &mut Vec<String>) {
    for e in es {
        match &e.expr {
            EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
            EntryExpr::MapEntry(m) => {
                free_variables(&m.key, bound, out);
                free_variables(&m.value, bound, out);
            }
        }
    }
}

/// The shared CEL environment (standard library only).
pub fn env() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

/// The variables of one decision, built once and read by every condition.
pub struct Scope<'v> {
    ctx: Context<'v, 'v>,
    /// Set when the arguments could not be converted (too deep, too big):
    /// conditions that read `args` then fail instead of seeing a partial view.
    args_error: Option<String>,
}

/// What a scope is built from.
pub struct ScopeInput<'a> {
    pub identity: &'a Identity,
    pub target: &'a str,
    pub method: &'a str,
    pub name: Option<&'a str>,
    pub arguments: Option<&'a Json>,
}

impl<'v> Scope<'v> {
    /// The values borrow from `input` (strings are not copied): building
    /// them is most of the cost of a condition.
    pub fn new(env: &Arc<Env>, input: &ScopeInput<'v>) -> Self {
        let mut ctx = Context::with_env(Arc::clone(env));
        let mut budget = MAX_ARGS_NODES;
        let (args, args_error): (Box<dyn Val + 'v>, _) = match input.arguments {
            None => (Box::new(CelMap::from(HashMap::new())), None),
            Some(v) => match json_to_val(v, 0, &mut budget) {
                Ok(v) => (v, None),
                Err(e) => (Box::new(CelNull), Some(e)),
            },
        };
        ctx.add_variable_as_val("args", args);
        ctx.add_variable_as_val("identity", identity_val(input.identity));
        ctx.add_variable_as_val("target", string(input.target));
        ctx.add_variable_as_val("method", string(input.method));
        ctx.add_variable_as_val(
            "name",
            input
                .name
                .map_or_else(|| Box::new(CelNull) as Box<dyn Val>, string),
        );
        Self { ctx, args_error }
    }
}

fn string<'v>(s: &'v str) -> Box<dyn Val + 'v> {
    Box::new(CelString::from(s))
}

fn identity_val(id: &Identity) -> Box<dyn Val + '_> {
    let mut m: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> = HashMap::with_capacity(5);
    m.insert("subject".into(), string(&id.subject));
    m.insert(
        "email".into(),
        id.email
            .as_deref()
            .map_or_else(|| Box::new(CelNull) as Box<dyn Val>, string),
    );
    m.insert(
        "groups".into(),
        Box::new(CelList::from(
            id.groups.iter().map(|g| string(g)).collect::<Vec<_>>(),
        )),
    );
    m.insert("issuer".into(), string(&id.issuer));
    m.insert(
        "kind".into(),
        string(match id.kind {
            IdentityKind::Human => "human",
            IdentityKind::Workload => "workload",
        }),
    );
    Box::new(CelMap::from(m))
}

/// JSON → CEL. Integers stay integers (so `args.amount < 10000` compares
/// as numbers without a float detour); depth and size are bounded.
fn json_to_val<'v>(
    v: &'v Json,
    depth: usize,
    budget: &mut usize,
) -> Result<Box<dyn Val + 'v>, String> {
    if depth > MAX_ARGS_DEPTH {
        return Err(format!(
            "the arguments are nested deeper than {MAX_ARGS_DEPTH} levels"
        ));
    }
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("the arguments hold more than {MAX_ARGS_NODES} values"))?;
    Ok(match v {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => string(s),
        Json::Array(a) => Box::new(CelList::from(
            a.iter()
                .map(|x| json_to_val(x, depth + 1, budget))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Json::Object(o) => {
            let mut m: HashMap<CelMapKey<'v>, Box<dyn Val + 'v>> = HashMap::with_capacity(o.len());
            for (k, x) in o {
                m.insert(k.as_str().into(), json_to_val(x, depth + 1, budget)?);
            }
            Box::new(CelMap::from(m))
        }
    })
}
