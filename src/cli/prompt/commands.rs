//! The calls each `llmops prompt` subcommand makes, and what it prints.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use llmops_registry::NewPromptVersion;
use serde_json::{json, Map, Value as JsonValue};
use tokio_stream::StreamExt as _;

use super::{convert, output, vars, LabelCommand, PromptCommand, Selector};
use crate::cli::files::read_document;
use crate::cli::output::emit;
use crate::cli::paging::collect_pages;
use crate::cli::values::value_from_json;
use crate::cli::{connect, status_error, ClientOptions};
use crate::pb;
use crate::pb::prompt_service_client::PromptServiceClient;

type Client = PromptServiceClient<crate::cli::Connection>;

/// Runs one subcommand. Local inputs (files, `--var`) are read before connecting, so
/// their errors do not depend on the server.
pub(crate) async fn run(command: PromptCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let json = options.json;
    match command {
        PromptCommand::Create { file } => {
            let new: NewPromptVersion = read_document(&file)?;
            let mut client = client(options).await?;
            let created = client
                .create_prompt_version(pb::CreatePromptVersionRequest {
                    prompt_version: Some(convert::version_to_pb(new)),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print_version(json, created.prompt_version)
        }
        PromptCommand::Get { name, selector } => {
            let mut client = client(options).await?;
            let version = get_version(&mut client, &name, &selector).await?;
            print_version(json, Some(version))
        }
        PromptCommand::Latest { name } => {
            let mut client = client(options).await?;
            let latest = client
                .get_latest_prompt_version(pb::GetLatestPromptVersionRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print_version(json, latest.prompt_version)
        }
        PromptCommand::List { limit } => {
            let client = client(options).await?;
            let prompts = list_prompts(&client, limit).await?;
            if json {
                emit(|out| crate::cli::output::messages(out, &prompts))
            } else {
                emit(|out| output::summaries(out, &prompts))
            }
        }
        PromptCommand::Versions { name, limit } => {
            let client = client(options).await?;
            let versions = list_versions(&client, name.unwrap_or_default(), limit).await?;
            if json {
                emit(|out| crate::cli::output::messages(out, &versions))
            } else {
                emit(|out| output::versions(out, &versions))
            }
        }
        PromptCommand::Activate {
            name,
            version,
            override_reason,
        } => {
            let mut client = client(options).await?;
            let activated = client
                .activate_prompt_version(pb::ActivatePromptVersionRequest {
                    name,
                    version,
                    override_reason: override_reason.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .prompt_version
                .unwrap_or_default();
            if json {
                emit(|out| crate::cli::output::message(out, &activated))
            } else {
                emit(|out| writeln!(out, "activated {}@{}", activated.name, activated.version))
            }
        }
        PromptCommand::Label { command } => label(command, options).await,
        PromptCommand::Delete { name, version, all } => {
            let mut client = client(options).await?;
            delete(&mut client, json, name, version, all).await
        }
        PromptCommand::Render {
            name,
            selector,
            vars,
            vars_file,
            user,
        } => {
            let file_values: Map<String, JsonValue> = match &vars_file {
                Some(path) => read_document(path)?,
                None => Map::new(),
            };
            let mut client = client(options).await?;
            render(&mut client, json, name, selector, file_values, &vars, user).await
        }
        PromptCommand::Diff { name, from, to } => {
            let mut client = client(options).await?;
            let diff = client
                .diff_prompt_versions(pb::DiffPromptVersionsRequest {
                    name,
                    from_version: from,
                    to_version: to,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                emit(|out| crate::cli::output::message(out, &diff))
            } else {
                emit(|out| output::diff(out, &diff))
            }
        }
        PromptCommand::Watch { name, after } => {
            let mut client = client(options).await?;
            watch(&mut client, json, name.unwrap_or_default(), after).await
        }
    }
}

async fn client(options: &ClientOptions) -> anyhow::Result<Client> {
    Ok(PromptServiceClient::new(connect(options).await?))
}

fn print_version(json: bool, version: Option<pb::PromptVersion>) -> anyhow::Result<()> {
    let version = version.context("the server sent no prompt version")?;
    if json {
        emit(|out| crate::cli::output::message(out, &version))
    } else {
        emit(|out| output::version(out, &version))
    }
}

async fn get_version(
    client: &mut Client,
    name: &str,
    selector: &Selector,
) -> anyhow::Result<pb::PromptVersion> {
    client
        .get_prompt_version(pb::GetPromptVersionRequest {
            name: name.to_owned(),
            version: selector.version.clone().unwrap_or_default(),
            label: selector.label.clone().unwrap_or_default(),
            user_id: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .prompt_version
        .context("the server sent no prompt version")
}

async fn list_prompts(
    client: &Client,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::PromptSummary>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        async move {
            let page = client
                .list_prompts(pb::ListPromptsRequest {
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.prompts, page.next_page_token))
        }
    })
    .await
}

async fn list_versions(
    client: &Client,
    name: String,
    limit: Option<u32>,
) -> anyhow::Result<Vec<pb::PromptVersion>> {
    collect_pages(limit, |page_size, page_token| {
        let mut client = client.clone();
        let name = name.clone();
        async move {
            let page = client
                .list_prompt_versions(pb::ListPromptVersionsRequest {
                    name,
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            Ok((page.prompt_versions, page.next_page_token))
        }
    })
    .await
}

async fn label(command: LabelCommand, options: &ClientOptions) -> anyhow::Result<()> {
    let json = options.json;
    let mut client = client(options).await?;
    match command {
        LabelCommand::Set {
            name,
            label,
            version,
            override_reason,
        } => {
            let set = client
                .set_prompt_label(pb::SetPromptLabelRequest {
                    name,
                    label: label.clone(),
                    version,
                    override_reason: override_reason.unwrap_or_default(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                return emit(|out| crate::cli::output::message(out, &set));
            }
            let target = set.prompt_version.unwrap_or_default();
            if set.previous_version.is_empty() {
                emit(|out| writeln!(out, "label {label} set: {}@{}", target.name, target.version))
            } else {
                emit(|out| {
                    writeln!(
                        out,
                        "label {label} moved: {}@{} (was {})",
                        target.name, target.version, set.previous_version
                    )
                })
            }
        }
        LabelCommand::Delete { name, label } => {
            let deleted = client
                .delete_prompt_label(pb::DeletePromptLabelRequest {
                    name: name.clone(),
                    label: label.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json {
                emit(|out| crate::cli::output::message(out, &deleted))
            } else {
                emit(|out| {
                    writeln!(
                        out,
                        "label {label} deleted from {name} (was {})",
                        deleted.previous_version
                    )
                })
            }
        }
        LabelCommand::History { name, label } => {
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_label_history(pb::ListLabelHistoryRequest {
                        name: name.clone(),
                        label: label.clone().unwrap_or_default(),
                        page_size: 0,
                        page_token,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner();
                for event in &page.events {
                    if json {
                        emit(|out| crate::cli::output::message_line(out, event))?;
                    } else {
                        let time = crate::cli::values::rfc3339(event.time.as_ref());
                        emit(|out| writeln!(out, "{time}  {}", output::event_line(event)))?;
                    }
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
    }
}

async fn delete(
    client: &mut Client,
    json: bool,
    name: String,
    version: Option<String>,
    all: bool,
) -> anyhow::Result<()> {
    match version {
        Some(version) => {
            client
                .delete_prompt_version(pb::DeletePromptVersionRequest {
                    name: name.clone(),
                    version: version.clone(),
                })
                .await
                .map_err(status_error)?;
            if json {
                emit(|out| output::json(out, &json!({"name": name, "version": version})))
            } else {
                emit(|out| writeln!(out, "deleted {name}@{version}"))
            }
        }
        None => {
            // clap requires one of the two; checked again so a caller building
            // PromptCommand by hand cannot delete a whole prompt by accident.
            if !all {
                bail!("give a version to delete, or --all to delete the whole prompt");
            }
            let deleted = client
                .delete_prompt(pb::DeletePromptRequest { name: name.clone() })
                .await
                .map_err(status_error)?
                .into_inner();
            let count = deleted.deleted_versions;
            if json {
                emit(|out| crate::cli::output::message(out, &deleted))
            } else {
                let plural = if count == 1 { "" } else { "s" };
                emit(|out| writeln!(out, "deleted prompt {name} ({count} version{plural})"))
            }
        }
    }
}

async fn render(
    client: &mut Client,
    json: bool,
    name: String,
    mut selector: Selector,
    file_values: Map<String, JsonValue>,
    var_args: &[(String, String)],
    user: Option<String>,
) -> anyhow::Result<()> {
    let mut declared = BTreeMap::new();
    // What an experiment served the user: its id, the variant and the render's token.
    let mut served = None;
    if !var_args.is_empty() || user.is_some() {
        // `--var` values are strings: look up the declared types to convert them, and
        // render exactly the version looked up, so a label moving in between cannot
        // pair these values with another version's types. With `--user`, the lookup is
        // also the user's assignment when an experiment serves the label.
        let got = client
            .get_prompt_version(pb::GetPromptVersionRequest {
                name: name.clone(),
                version: selector.version.clone().unwrap_or_default(),
                label: selector.label.clone().unwrap_or_default(),
                user_id: user.unwrap_or_default(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        let version = got
            .prompt_version
            .context("the server sent no prompt version")?;
        for variable in &version.variables {
            if let Some(var_type) = convert::type_from_pb(variable.r#type) {
                declared.insert(variable.name.clone(), var_type);
            }
        }
        if !got.experiment_id.is_empty() {
            served = Some((got.experiment_id, got.variant_id, got.render_id));
        }
        selector = Selector {
            version: Some(version.version),
            label: None,
        };
    }
    let values = vars::merge(file_values, var_args, &declared)?;
    let mut rendered = client
        .render_prompt(pb::RenderPromptRequest {
            name,
            version: selector.version.unwrap_or_default(),
            label: selector.label.unwrap_or_default(),
            variables: values
                .iter()
                .map(|(k, v)| (k.clone(), value_from_json(v)))
                .collect(),
            user_id: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    if let Some((experiment, variant, render_id)) = served {
        // On stderr: stdout stays the rendered prompt, fit for a pipe.
        eprintln!(
            "served by experiment {experiment}, variant {variant}: version {}",
            rendered.version
        );
        rendered.experiment_id = experiment;
        rendered.variant_id = variant;
        rendered.render_id = render_id;
    }
    if json {
        emit(|out| crate::cli::output::message(out, &rendered))
    } else {
        emit(|out| output::rendered(out, &rendered))
    }
}

async fn watch(
    client: &mut Client,
    json: bool,
    name: String,
    after: Option<u64>,
) -> anyhow::Result<()> {
    let mut events = client
        .watch_prompts(pb::WatchPromptsRequest {
            name,
            after_sequence: after,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(event) = events.next().await {
        let event = event.map_err(status_error)?;
        if json {
            emit(|out| crate::cli::output::message_line(out, &event))?;
        } else {
            emit(|out| writeln!(out, "{}", output::event_line(&event)))?;
        }
    }
    // The server ends the stream when it shuts down.
    Ok(())
}
