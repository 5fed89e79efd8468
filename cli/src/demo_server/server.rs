//! The demo server's MCP handler: bank-flavoured tools, one resource and one
//! prompt.
//!
//! The handler is transport-agnostic and stateless (every instance is an
//! inexpensive clone of the same routers), so the streamable HTTP service can
//! build one per session or per stateless request and stdio uses one for the
//! whole connection.

use std::time::Duration;

use rmcp::{
    handler::server::{
        router::{prompt::PromptRouter, tool::ToolRouter},
        wrapper::Parameters,
    },
    model::{
        GetPromptResult, Implementation, ListResourcesResult, PaginatedRequestParams,
        ProgressNotificationParam, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, Resource, ResourceContents, Role, ServerCapabilities, ServerConfig,
    },
    prompt, prompt_handler, prompt_router,
    service::RequestContext,
    tool, tool_handler, tool_router, ErrorData as McpError, Json, RoleServer, ServerHandler,
};
use schemars::JsonSchema;
use serde::Deserialize;

use super::fake_bank::{self, Customer};

/// URI of the demo server's only resource.
pub const RETENTION_POLICY_URI: &str = "hoop-demo://policies/retention";

/// Text of the retention policy resource.
const RETENTION_POLICY: &str = "\
Hoop Demo Bank - data retention policy (fictional)

1. Customer records are kept for 7 years after the account closes.
2. Transaction exports are kept for 90 days, then deleted.
3. Card numbers, SSNs, IBANs and routing numbers must never leave the bank
   unmasked; exports to third parties are masked to the last four digits.
4. Model deployments to production require an approved change ticket.
";

/// Largest payload `big_payload` produces: 16 MiB.
pub const MAX_BIG_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes `big_payload` repeats.
const PAYLOAD_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Arguments of `echo`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// Text to send back unchanged.
    pub text: String,
}

/// Arguments of `get_customer`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetCustomerArgs {
    /// Identifier of the customer to look up, e.g. `cust-001`.
    pub customer_id: String,
}

/// Arguments of `deploy_model`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeployModelArgs {
    /// Name of the model to deploy.
    pub model: String,
    /// Version of the model to deploy.
    pub version: String,
    /// Target environment, e.g. `staging` or `production`.
    pub environment: String,
}

/// Arguments of `delete_model`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeleteModelArgs {
    /// Name of the model to delete.
    pub model: String,
}

/// Arguments of `export_transactions`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExportTransactionsArgs {
    /// Account whose transactions to export.
    pub account: String,
    /// First booking date to include, `YYYY-MM-DD` (inclusive).
    pub from: Option<String>,
    /// Last booking date to include, `YYYY-MM-DD` (inclusive).
    pub to: Option<String>,
}

/// Arguments of `slow_count`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SlowCountArgs {
    /// How many steps to count (1 to 100).
    #[schemars(range(min = 1, max = 100))]
    pub steps: u32,
    /// Pause before each step, in milliseconds (0 to 5000).
    #[schemars(range(min = 0, max = 5000))]
    pub delay_ms: u64,
}

/// Arguments of `big_payload`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct BigPayloadArgs {
    /// Exact number of ASCII bytes to return (0 to 16777216).
    #[schemars(range(min = 0, max = 16_777_216))]
    pub bytes: u64,
}

/// Arguments of the `summarize_customer` prompt.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummarizeCustomerArgs {
    /// Identifier of the customer to summarize.
    pub customer_id: String,
}

/// The demo MCP server.
#[derive(Debug, Clone)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
    prompt_router: PromptRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

/// Rejects an empty (or all-blank) required string argument.
fn require(name: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("`{name}` must not be empty"))
    } else {
        Ok(())
    }
}

#[tool_router(router = tool_router)]
impl DemoServer {
    /// A server with every tool and prompt registered.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    #[tool(
        description = "Echo: returns the given text unchanged, as a single text content block.",
        annotations(title = "Echo", read_only_hint = true, open_world_hint = false)
    )]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }

    #[tool(
        description = "Look up a bank customer by id. Returns the full customer record \
                       (name, email, card number, SSN, IBAN, routing and account numbers) \
                       as JSON text and as structured content. All data is fake.",
        annotations(title = "Get customer", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_customer(
        &self,
        Parameters(args): Parameters<GetCustomerArgs>,
    ) -> Result<Json<Customer>, String> {
        require("customer_id", &args.customer_id)?;
        Ok(Json(Customer::fake(&args.customer_id)))
    }

    #[tool(
        description = "Deploy a version of a machine-learning model to an environment \
                       (e.g. staging, production). Changes what serves traffic.",
        annotations(
            title = "Deploy model",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn deploy_model(
        &self,
        Parameters(args): Parameters<DeployModelArgs>,
    ) -> Result<String, String> {
        require("model", &args.model)?;
        require("version", &args.version)?;
        require("environment", &args.environment)?;
        Ok(format!(
            "deployed model {} version {} to {}",
            args.model, args.version, args.environment
        ))
    }

    #[tool(
        description = "Delete a machine-learning model and all its versions. Irreversible.",
        annotations(
            title = "Delete model",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_model(
        &self,
        Parameters(args): Parameters<DeleteModelArgs>,
    ) -> Result<String, String> {
        require("model", &args.model)?;
        Ok(format!("deleted model {}", args.model))
    }

    #[tool(
        description = "Export the transactions of an account as CSV \
                       (date,account,description,amount,currency), optionally limited to \
                       booking dates between `from` and `to` (inclusive, YYYY-MM-DD).",
        annotations(
            title = "Export transactions",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn export_transactions(
        &self,
        Parameters(args): Parameters<ExportTransactionsArgs>,
    ) -> Result<String, String> {
        require("account", &args.account)?;
        for (name, date) in [("from", &args.from), ("to", &args.to)] {
            if let Some(date) = date {
                if !fake_bank::is_iso_date(date) {
                    return Err(format!("`{name}` must be a YYYY-MM-DD date, got {date:?}"));
                }
            }
        }
        Ok(fake_bank::transactions_csv(
            &args.account,
            args.from.as_deref(),
            args.to.as_deref(),
        ))
    }

    #[tool(
        description = "Count from 1 to `steps`, pausing `delay_ms` before each step. Sends a \
                       progress notification per step when the request carries a progressToken \
                       and stops early when the request is cancelled. Returns \"counted N\".",
        annotations(title = "Slow count", read_only_hint = true, open_world_hint = false)
    )]
    async fn slow_count(
        &self,
        Parameters(args): Parameters<SlowCountArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, String> {
        if !(1..=100).contains(&args.steps) {
            return Err(format!("`steps` must be 1..=100, got {}", args.steps));
        }
        if args.delay_ms > 5000 {
            return Err(format!(
                "`delay_ms` must be 0..=5000, got {}",
                args.delay_ms
            ));
        }
        let progress_token = context.meta.get_progress_token();
        let delay = Duration::from_millis(args.delay_ms);
        for step in 1..=args.steps {
            tokio::select! {
                () = context.ct.cancelled() => {
                    tracing::debug!(step, "slow_count cancelled");
                    return Err(format!("cancelled after {} of {} steps", step - 1, args.steps));
                }
                () = tokio::time::sleep(delay) => {}
            }
            if let Some(token) = &progress_token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {}", args.steps));
                if let Err(error) = context.peer.notify_progress(progress).await {
                    tracing::debug!(%error, "slow_count: progress notification not delivered");
                }
            }
        }
        Ok(format!("counted {}", args.steps))
    }

    #[tool(
        description = "Return a text content block of exactly `bytes` ASCII bytes \
                       (at most 16 MiB), for testing large responses.",
        annotations(title = "Big payload", read_only_hint = true, open_world_hint = false)
    )]
    async fn big_payload(
        &self,
        Parameters(args): Parameters<BigPayloadArgs>,
    ) -> Result<String, String> {
        if args.bytes > MAX_BIG_PAYLOAD_BYTES {
            return Err(format!(
                "`bytes` must be at most {MAX_BIG_PAYLOAD_BYTES}, got {}",
                args.bytes
            ));
        }
        let len = usize::try_from(args.bytes).map_err(|error| error.to_string())?;
        Ok(PAYLOAD_ALPHABET
            .iter()
            .cycle()
            .take(len)
            .map(|&byte| char::from(byte))
            .collect())
    }
}

#[prompt_router]
impl DemoServer {
    #[prompt(
        name = "summarize_customer",
        description = "Ask the model to summarize a customer's record, with PII masked."
    )]
    async fn summarize_customer(
        &self,
        Parameters(args): Parameters<SummarizeCustomerArgs>,
    ) -> GetPromptResult {
        GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Call the get_customer tool for customer {id}, then write a two-sentence \
                 summary of the customer. Mask card numbers, SSNs, IBANs, routing and \
                 account numbers to their last four characters.",
                id = args.customer_id
            ),
        )])
        .with_description(format!("Summarize customer {}", args.customer_id))
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new("hoop-demo", env!("CARGO_PKG_VERSION"))
                .with_title("hoop demo bank"),
        )
        .with_instructions(
            "A fictional bank for trying out hoop. Every customer record, card number \
             and account is fake. Tools: echo, get_customer, deploy_model, delete_model, \
             export_transactions, slow_count, big_payload.",
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(vec![Resource::new(
            RETENTION_POLICY_URI,
            "retention-policy",
        )
        .with_title("Data retention policy")
        .with_description("How long the demo bank keeps customer data (fictional).")
        .with_mime_type("text/plain")]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        if request.uri == RETENTION_POLICY_URI {
            Ok(ReadResourceResult::new(vec![ResourceContents::text(
                RETENTION_POLICY,
                RETENTION_POLICY_URI,
            )
            .with_mime_type("text/plain")])
            .into())
        } else {
            Err(McpError::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_all_tools_and_the_prompt() {
        let server = DemoServer::new();
        let mut tools: Vec<String> = server
            .tool_router
            .list_all()
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect();
        tools.sort();
        assert_eq!(
            tools,
            [
                "big_payload",
                "delete_model",
                "deploy_model",
                "echo",
                "export_transactions",
                "get_customer",
                "slow_count"
            ]
        );
        assert!(server.prompt_router.has_route("summarize_customer"));
    }
}
