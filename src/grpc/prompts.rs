//! `llmops.v1.PromptService` on top of the registry.

mod messages;

pub(crate) use self::messages::{
    messages_to_pb, model_config_to_pb, new_prompt_version, variable_to_pb,
};

use std::sync::Arc;

use llmops_access::{Caller, Role};
use llmops_registry::{Registry, VersionSelector, WatchItem};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::messages::{
    event_to_pb, prompt_version_to_pb, render_values, summary_to_pb, variable_change_to_pb,
};
use crate::grpc::convert::timestamp;
use crate::grpc::status::{invalid_field, IntoStatus as _, OrStatus as _};
use crate::grpc::{response_stream, ResponseStream};
use crate::pb;
use crate::pb::prompt_service_server::PromptService;
use crate::server::access::caller_of;
use crate::server::audit::with_runtime_write;
use llmops_experiments::ExperimentService;
use llmops_generations::RenderRef;

/// The PromptService adapter.
#[derive(Debug, Clone)]
pub struct PromptApi {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    /// Labels only ROLE_ADMIN may move or delete (`protected_labels`).
    protected_labels: Arc<[String]>,
    /// The experiments that serve prompt labels to users; none in adapters built
    /// without them.
    experiments: Option<Arc<ExperimentService>>,
}

impl PromptApi {
    /// An adapter over the registry; watches end at `shutdown`; `protected_labels` move
    /// only for ROLE_ADMIN.
    pub fn new(
        registry: Arc<Registry>,
        shutdown: CancellationToken,
        protected_labels: Vec<String>,
    ) -> Self {
        Self {
            registry,
            shutdown,
            protected_labels: protected_labels.into(),
            experiments: None,
        }
    }

    /// The adapter, serving users the version their experiment variant names while an
    /// experiment serves the label they ask for.
    pub fn serving_experiments(mut self, experiments: Arc<ExperimentService>) -> Self {
        self.experiments = Some(experiments);
        self
    }

    /// What `user_id` is served for `name`'s `label`: the variant's version, the
    /// experiment and the variant, when a running experiment serves that label and the
    /// user is in it; `None` otherwise (the label's own version is served).
    ///
    /// Serving a user assigns them (their first assignment is a durable exposure, as
    /// AssignVariant's), so a `user_id` needs ROLE_APP, whether or not an experiment
    /// serves the label right now: a reader's key cannot write exposures.
    async fn served(
        &self,
        caller: &Caller,
        name: &str,
        version: &str,
        label: &str,
        user_id: &str,
    ) -> Result<Option<Served>, Status> {
        if !user_id.is_empty() && caller.role < Role::App {
            return Err(Status::permission_denied(format!(
                "rendering for a user (user_id) assigns them to the experiment serving the label and needs {}; {} has {}",
                Role::App,
                caller.identity,
                caller.role
            )));
        }
        if user_id.is_empty() || label.is_empty() || !version.is_empty() {
            return Ok(None);
        }
        let Some(experiments) = &self.experiments else {
            return Ok(None);
        };
        let Some(experiment_id) = experiments.serving(name, label) else {
            return Ok(None);
        };
        match experiments.assign(&experiment_id, user_id).await {
            Ok(assignment) if assignment.in_experiment => Ok(Some(Served {
                version: assignment.variant.prompt_version,
                experiment_id,
                variant_id: assignment.variant.id,
                new_exposure: assignment.new_exposure,
            })),
            Ok(_) => Ok(None),
            // Paused or ended since it was found: the label serves everyone.
            Err(llmops_core::ServiceError::FailedPrecondition(_)) => Ok(None),
            Err(err) => Err(err.into_status()),
        }
    }

    /// PERMISSION_DENIED unless `caller` may move or delete `label`, and may override
    /// its gate when `overriding`.
    fn check_label_move(
        &self,
        caller: &Caller,
        label: &str,
        overriding: bool,
    ) -> Result<(), Status> {
        check_label_move(&self.protected_labels, caller, label, overriding)
    }
}

/// What a running experiment serves a user for a label.
struct Served {
    /// The user's variant's prompt version.
    version: String,
    experiment_id: String,
    variant_id: String,
    /// Whether this call stored the user's first exposure.
    new_exposure: bool,
}

impl Served {
    /// The experiment, when the call stored an exposure to it.
    fn exposed(served: &Option<Served>) -> Option<String> {
        served
            .as_ref()
            .filter(|served| served.new_exposure)
            .map(|served| served.experiment_id.clone())
    }

    /// `response`, marked for the audit log as a runtime write to `exposed` (an
    /// exposure, as AssignVariant stores) when there is one.
    fn audited<T>(response: Response<T>, exposed: Option<String>) -> Response<T> {
        match exposed {
            Some(experiment_id) => with_runtime_write(response, experiment_id),
            None => response,
        }
    }
}

/// PERMISSION_DENIED unless `caller` may move or delete `label` (a `protected` one
/// needs ROLE_ADMIN), and may override its gate when `overriding`.
pub(crate) fn check_label_move(
    protected: &[String],
    caller: &Caller,
    label: &str,
    overriding: bool,
) -> Result<(), Status> {
    if caller.role >= Role::Admin {
        return Ok(());
    }
    if protected.iter().any(|protected| protected == label) {
        return Err(Status::permission_denied(format!(
            "label {label:?} is protected (protected_labels): moving or deleting it needs {}; {} has {}",
            Role::Admin,
            caller.identity,
            caller.role
        )));
    }
    if overriding {
        return Err(Status::permission_denied(format!(
            "overriding a release gate (override_reason) needs {}; {} has {}",
            Role::Admin,
            caller.identity,
            caller.role
        )));
    }
    Ok(())
}

/// An optional string field: empty means unset.
fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

fn selector(version: &str, label: &str) -> Result<VersionSelector, Status> {
    VersionSelector::from_fields(version, label).or_status()
}

#[tonic::async_trait]
impl PromptService for PromptApi {
    async fn create_prompt_version(
        &self,
        request: Request<pb::CreatePromptVersionRequest>,
    ) -> Result<Response<pb::CreatePromptVersionResponse>, Status> {
        let caller = caller_of(&request);
        let pb::CreatePromptVersionRequest { prompt_version } = request.into_inner();
        let Some(prompt_version) = prompt_version else {
            return Err(invalid_field(
                "prompt_version",
                "prompt_version is required",
            ));
        };
        let mut new = new_prompt_version(prompt_version)?;
        // Who made it, when the client did not say: the caller's key or certificate.
        if let (true, Some(actor)) = (new.author.is_empty(), caller.actor()) {
            new.author = actor.to_owned();
        }
        let view = self
            .registry
            .create_version(new)
            .await
            .or_status_at("prompt_version")?;
        Ok(Response::new(pb::CreatePromptVersionResponse {
            prompt_version: Some(prompt_version_to_pb(view)),
        }))
    }

    async fn get_prompt_version(
        &self,
        request: Request<pb::GetPromptVersionRequest>,
    ) -> Result<Response<pb::GetPromptVersionResponse>, Status> {
        let caller = caller_of(&request);
        let pb::GetPromptVersionRequest {
            name,
            version,
            label,
            user_id,
        } = request.into_inner();
        let served = self
            .served(&caller, &name, &version, &label, &user_id)
            .await?;
        let chosen = match &served {
            Some(served) => selector(&served.version, "")?,
            None => selector(&version, &label)?,
        };
        let view = self.registry.get_version(&name, &chosen).or_status()?;
        let exposed = Served::exposed(&served);
        let (experiment_id, variant_id) = served
            .map(|served| (served.experiment_id, served.variant_id))
            .unwrap_or_default();
        let prompt_version = prompt_version_to_pb(view);
        let render_id = RenderRef {
            prompt_name: name,
            prompt_version: prompt_version.version.clone(),
            experiment_id: experiment_id.clone(),
            variant_id: variant_id.clone(),
        }
        .encode();
        let response = Response::new(pb::GetPromptVersionResponse {
            prompt_version: Some(prompt_version),
            experiment_id,
            variant_id,
            render_id,
        });
        Ok(Served::audited(response, exposed))
    }

    async fn get_latest_prompt_version(
        &self,
        request: Request<pb::GetLatestPromptVersionRequest>,
    ) -> Result<Response<pb::GetLatestPromptVersionResponse>, Status> {
        let pb::GetLatestPromptVersionRequest { name } = request.into_inner();
        let view = self.registry.latest_version(&name).or_status()?;
        Ok(Response::new(pb::GetLatestPromptVersionResponse {
            prompt_version: Some(prompt_version_to_pb(view)),
        }))
    }

    async fn list_prompt_versions(
        &self,
        request: Request<pb::ListPromptVersionsRequest>,
    ) -> Result<Response<pb::ListPromptVersionsResponse>, Status> {
        let pb::ListPromptVersionsRequest {
            name,
            page_size,
            page_token,
        } = request.into_inner();
        let name = (!name.is_empty()).then_some(name.as_str());
        let page = self
            .registry
            .list_versions(name, page_size, &page_token)
            .or_status()?;
        Ok(Response::new(pb::ListPromptVersionsResponse {
            prompt_versions: page.items.into_iter().map(prompt_version_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn list_prompts(
        &self,
        request: Request<pb::ListPromptsRequest>,
    ) -> Result<Response<pb::ListPromptsResponse>, Status> {
        let pb::ListPromptsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let page = self
            .registry
            .list_prompts(page_size, &page_token)
            .or_status()?;
        Ok(Response::new(pb::ListPromptsResponse {
            prompts: page.items.iter().map(summary_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn activate_prompt_version(
        &self,
        request: Request<pb::ActivatePromptVersionRequest>,
    ) -> Result<Response<pb::ActivatePromptVersionResponse>, Status> {
        let caller = caller_of(&request);
        let pb::ActivatePromptVersionRequest {
            name,
            version,
            override_reason,
        } = request.into_inner();
        let view = self
            .registry
            .activate_by(&name, &version, non_empty(&override_reason), caller.actor())
            .await
            .or_status()?;
        Ok(Response::new(pb::ActivatePromptVersionResponse {
            prompt_version: Some(prompt_version_to_pb(view)),
        }))
    }

    async fn set_prompt_label(
        &self,
        request: Request<pb::SetPromptLabelRequest>,
    ) -> Result<Response<pb::SetPromptLabelResponse>, Status> {
        let caller = caller_of(&request);
        let pb::SetPromptLabelRequest {
            name,
            label,
            version,
            override_reason,
        } = request.into_inner();
        self.check_label_move(&caller, &label, !override_reason.is_empty())?;
        let (view, previous) = self
            .registry
            .set_label_by(
                &name,
                &label,
                &version,
                non_empty(&override_reason),
                caller.actor(),
            )
            .await
            .or_status()?;
        Ok(Response::new(pb::SetPromptLabelResponse {
            prompt_version: Some(prompt_version_to_pb(view)),
            previous_version: previous.map(|v| v.to_string()).unwrap_or_default(),
        }))
    }

    async fn delete_prompt_label(
        &self,
        request: Request<pb::DeletePromptLabelRequest>,
    ) -> Result<Response<pb::DeletePromptLabelResponse>, Status> {
        let caller = caller_of(&request);
        let pb::DeletePromptLabelRequest { name, label } = request.into_inner();
        self.check_label_move(&caller, &label, false)?;
        let previous = self
            .registry
            .delete_label_by(&name, &label, caller.actor())
            .await
            .or_status()?;
        Ok(Response::new(pb::DeletePromptLabelResponse {
            previous_version: previous.to_string(),
        }))
    }

    async fn delete_prompt_version(
        &self,
        request: Request<pb::DeletePromptVersionRequest>,
    ) -> Result<Response<pb::DeletePromptVersionResponse>, Status> {
        let pb::DeletePromptVersionRequest { name, version } = request.into_inner();
        self.registry
            .delete_version(&name, &version)
            .await
            .or_status()?;
        Ok(Response::new(pb::DeletePromptVersionResponse {}))
    }

    async fn render_prompt(
        &self,
        request: Request<pb::RenderPromptRequest>,
    ) -> Result<Response<pb::RenderPromptResponse>, Status> {
        let caller = caller_of(&request);
        let pb::RenderPromptRequest {
            name,
            version,
            label,
            variables,
            user_id,
        } = request.into_inner();
        let served = self
            .served(&caller, &name, &version, &label, &user_id)
            .await?;
        let chosen = match &served {
            Some(served) => selector(&served.version, "")?,
            None => selector(&version, &label)?,
        };
        let exposed = Served::exposed(&served);
        let (experiment_id, variant_id) = served
            .map(|served| (served.experiment_id, served.variant_id))
            .unwrap_or_default();
        let values = render_values(variables);
        let (rendered, version) = self.registry.render(&name, &chosen, &values).map_err(|e| {
            if let llmops_registry::RegistryError::ResourceExhausted(_) = e {
                // The render may have used its whole memory budget: hand it back.
                crate::memory::release();
            }
            e.into_status()
        })?;
        let response = Response::new(pb::RenderPromptResponse {
            text: rendered.text,
            messages: rendered
                .messages
                .into_iter()
                .map(|m| pb::RenderedMessage {
                    role: m.role,
                    content: m.content,
                })
                .collect(),
            render_id: RenderRef {
                prompt_name: name.clone(),
                prompt_version: version.to_string(),
                experiment_id: experiment_id.clone(),
                variant_id: variant_id.clone(),
            }
            .encode(),
            name,
            version: version.to_string(),
            experiment_id,
            variant_id,
        });
        Ok(Served::audited(response, exposed))
    }

    async fn diff_prompt_versions(
        &self,
        request: Request<pb::DiffPromptVersionsRequest>,
    ) -> Result<Response<pb::DiffPromptVersionsResponse>, Status> {
        let pb::DiffPromptVersionsRequest {
            name,
            from_version,
            to_version,
        } = request.into_inner();
        let diff = self
            .registry
            .diff(&name, &from_version, &to_version)
            .or_status()?;
        Ok(Response::new(pb::DiffPromptVersionsResponse {
            unified_diff: diff.unified_diff,
            variable_changes: diff
                .variable_changes
                .iter()
                .map(variable_change_to_pb)
                .collect(),
            lines_added: diff.lines_added as u32,
            lines_removed: diff.lines_removed as u32,
        }))
    }

    async fn delete_prompt(
        &self,
        request: Request<pb::DeletePromptRequest>,
    ) -> Result<Response<pb::DeletePromptResponse>, Status> {
        let pb::DeletePromptRequest { name } = request.into_inner();
        let deleted = self.registry.delete_prompt(&name).await.or_status()?;
        Ok(Response::new(pb::DeletePromptResponse {
            deleted_versions: deleted as u32,
        }))
    }

    type WatchPromptsStream = ResponseStream<pb::PromptEvent>;

    async fn watch_prompts(
        &self,
        request: Request<pb::WatchPromptsRequest>,
    ) -> Result<Response<Self::WatchPromptsStream>, Status> {
        let pb::WatchPromptsRequest {
            name,
            after_sequence,
        } = request.into_inner();
        let name = (!name.is_empty()).then_some(name);
        let subscription = self
            .registry
            .watch(name, after_sequence)
            .await
            .or_status()?;
        let stream = response_stream(
            &self.shutdown,
            subscription,
            |mut subscription| async move {
                let item = match subscription.next().await {
                    Ok(Some(item)) => Ok(watch_item_to_pb(item)),
                    Ok(None) => return None,
                    Err(err) => Err(err.into_status()),
                };
                Some((item, subscription))
            },
        );
        Ok(Response::new(stream))
    }

    async fn list_label_history(
        &self,
        request: Request<pb::ListLabelHistoryRequest>,
    ) -> Result<Response<pb::ListLabelHistoryResponse>, Status> {
        const DEFAULT_PAGE: usize = 100;
        const MAX_PAGE: usize = 1000;
        let request = request.into_inner();
        let after = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse::<u64>()
                .map_err(|_| invalid_field("page_token", "is not a token this server issued"))?
        };
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n < 0 => return Err(invalid_field("page_size", "must not be negative")),
            n => (n as usize).min(MAX_PAGE),
        };
        let registry = &self.registry;
        // The history of a prompt that never existed is an error, not an empty list.
        registry
            .get_version(&request.name, &VersionSelector::Active)
            .or_status()?;
        let (events, more) = registry
            .pointer_history(&request.name, non_empty(&request.label), after, size)
            .await
            .or_status()?;
        let next_page_token = match events.last() {
            Some(last) if more => last.sequence.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListLabelHistoryResponse {
            events: events.iter().map(event_to_pb).collect(),
            next_page_token,
        }))
    }
}

fn watch_item_to_pb(item: WatchItem) -> pb::PromptEvent {
    match item {
        WatchItem::Event(event) => event_to_pb(&event),
        WatchItem::Snapshot { sequence, version } => pb::PromptEvent {
            sequence,
            kind: pb::PromptEventKind::Snapshot.into(),
            time: Some(timestamp(version.version.updated_at)),
            prompt_version: Some(prompt_version_to_pb(*version)),
            ..pb::PromptEvent::default()
        },
        WatchItem::SnapshotEnd { sequence } => pb::PromptEvent {
            sequence,
            kind: pb::PromptEventKind::SnapshotEnd.into(),
            time: Some(timestamp(chrono::Utc::now())),
            ..pb::PromptEvent::default()
        },
    }
}
