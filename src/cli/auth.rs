//! `llmops auth ...`: API keys. `bootstrap` writes the first admin key straight into the
//! database (nobody has a key to call the API with yet); the other commands call
//! `llmops.v1.AuthService` with `--api-key`.

use std::io::{self, Write};
use std::time::Duration;

use clap::Subcommand;
use llmops_access::{KeyService, Role};
use llmops_store::{Storage, StorageOptions};

use crate::cli::output::{emit, message, table, write_table};
use crate::cli::values::rfc3339;
use crate::cli::{connect, status_error, ClientOptions};
use crate::config::Config;
use crate::grpc::convert::timestamp;
use crate::pb;
use crate::pb::auth_service_client::AuthServiceClient;

/// The `llmops auth` commands that call the API.
#[derive(Debug, Subcommand)]
pub enum AuthApiCommand {
    /// Create a key and print its secret, which is shown this once and never again.
    Create {
        /// 1-128 characters from [A-Za-z0-9._@:/-], unique among keys.
        #[arg(long)]
        name: String,
        /// reader, app, editor or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
        /// How long the key works, e.g. `90d`; unset: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        /// Calls per second the key may make on each replica; 0: no limit.
        #[arg(long, default_value_t = 0)]
        requests_per_second: u32,
    },
    /// List keys, newest first (never their secrets).
    List,
    /// Show one key.
    Get {
        /// The key's id (`key_...`).
        api_key_id: String,
    },
    /// Revoke a key on every replica at once.
    Revoke {
        /// The key's id (`key_...`).
        api_key_id: String,
    },
    /// Show who the API key given with --api-key is, and its role.
    Whoami,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| format!("{text:?} is not a role: reader, app, editor or admin"))
}

/// Runs an `llmops auth` command that calls the API.
pub async fn run(command: AuthApiCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let mut client = AuthServiceClient::new(connect(options).await?);
    match command {
        AuthApiCommand::Create {
            name,
            role,
            description,
            expires_in,
            requests_per_second,
        } => {
            let expires_at = match expires_in {
                Some(after) => Some(timestamp(
                    chrono::Utc::now() + chrono::Duration::from_std(after)?,
                )),
                None => None,
            };
            let created = client
                .create_api_key(pb::CreateApiKeyRequest {
                    name,
                    role: role.number(),
                    expires_at,
                    description,
                    requests_per_second,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if options.json {
                return emit(|out| message(out, &created));
            }
            let key = created.api_key.unwrap_or_default();
            emit(|out| print_secret(out, &key.name, &key.api_key_id, &created.secret))
        }
        AuthApiCommand::List => {
            let mut keys = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_api_keys(pb::ListApiKeysRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                keys.extend(page.api_keys);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if options.json {
                return emit(|out| {
                    message(
                        out,
                        &pb::ListApiKeysResponse {
                            api_keys: keys,
                            next_page_token: String::new(),
                        },
                    )
                });
            }
            emit(|out| keys_table(out, &keys))
        }
        AuthApiCommand::Get { api_key_id } => {
            let key = client
                .get_api_key(pb::GetApiKeyRequest { api_key_id })
                .await
                .map_err(status_error)?
                .into_inner();
            if options.json {
                return emit(|out| message(out, &key));
            }
            emit(|out| keys_table(out, &[key.api_key.unwrap_or_default()]))
        }
        AuthApiCommand::Revoke { api_key_id } => {
            let revoked = client
                .revoke_api_key(pb::RevokeApiKeyRequest { api_key_id })
                .await
                .map_err(status_error)?
                .into_inner();
            if options.json {
                return emit(|out| message(out, &revoked));
            }
            emit(|out| keys_table(out, &[revoked.api_key.unwrap_or_default()]))
        }
        AuthApiCommand::Whoami => {
            let me = client
                .who_am_i(pb::WhoAmIRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if options.json {
                return emit(|out| message(out, &me));
            }
            emit(|out| writeln!(out, "{} ({})", me.identity, role_name(me.role),))
        }
    }
}

/// `llmops auth bootstrap`: the first admin key, written to the configured database.
pub async fn bootstrap(config: &Config, name: &str, json: bool) -> anyhow::Result<()> {
    let url = config.database_url()?;
    let storage = Storage::open(
        &url,
        StorageOptions {
            durability: config.durability.into(),
            max_connections: 2,
        },
    )
    .await?;
    let created = KeyService::bootstrap(storage.keys.as_ref(), name, chrono::Utc::now()).await;
    storage.close().await;
    let (key, secret) = created?;
    if json {
        return emit(|out| {
            crate::cli::output::json(
                out,
                &serde_json::json!({
                    "api_key_id": key.id,
                    "name": key.name,
                    "role": key.role.as_str(),
                    "secret": secret,
                }),
            )
        });
    }
    emit(|out| print_secret(out, &key.name, &key.id, &secret))
}

fn print_secret(out: &mut dyn Write, name: &str, id: &str, secret: &str) -> io::Result<()> {
    writeln!(out, "created API key {name} ({id})")?;
    writeln!(out, "secret: {secret}")?;
    writeln!(
        out,
        "store the secret now: it is shown only this once (clients send it as `authorization: Bearer <secret>`, the CLI as --api-key or LLMOPS_API_KEY)"
    )
}

fn role_name(number: i32) -> &'static str {
    Role::from_number(number).map_or("ROLE_UNSPECIFIED", Role::as_str)
}

fn keys_table(out: &mut dyn Write, keys: &[pb::ApiKey]) -> io::Result<()> {
    let mut rows = table(&[
        "ID",
        "NAME",
        "ROLE",
        "SECRET",
        "CREATED",
        "EXPIRES",
        "REVOKED",
        "LAST USED",
    ]);
    for key in keys {
        rows.add_row(vec![
            key.api_key_id.clone(),
            key.name.clone(),
            role_name(key.role).to_owned(),
            format!("{}...", key.secret_prefix),
            rfc3339(key.created_at.as_ref()),
            rfc3339(key.expires_at.as_ref()),
            rfc3339(key.revoked_at.as_ref()),
            rfc3339(key.last_used_at.as_ref()),
        ]);
    }
    write_table(out, rows)
}
