//! `llmops.v1.AuthService` on top of the key service.

use std::sync::Arc;

use llmops_access::{ApiKey, AuditEvent, AuditQuery, AuditStore, KeyService, KeySpec, Role};
use tonic::{Request, Response, Status};

use crate::grpc::convert::{time_from_timestamp, timestamp};
use crate::grpc::status::{invalid_field, OrStatus as _};
use crate::pb;
use crate::pb::auth_service_server::AuthService as AuthServiceRpc;
use crate::server::access::{caller_of, MethodRoles};

/// Audit entries per page: the default and the most.
const DEFAULT_AUDIT_PAGE: usize = 100;
const MAX_AUDIT_PAGE: usize = 1000;

/// The AuthService adapter.
#[derive(Clone)]
pub struct AuthApi {
    keys: Arc<KeyService>,
    audit: Arc<dyn AuditStore>,
    methods: Arc<MethodRoles>,
}

impl std::fmt::Debug for AuthApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthApi").finish_non_exhaustive()
    }
}

impl AuthApi {
    /// An adapter over the key service and the audit log; `methods` resolves the bare
    /// method names of audit filters.
    pub(crate) fn new(
        keys: Arc<KeyService>,
        audit: Arc<dyn AuditStore>,
        methods: Arc<MethodRoles>,
    ) -> Self {
        Self {
            keys,
            audit,
            methods,
        }
    }

    /// The store query of a ListAuditEvents request; INVALID_ARGUMENT names the field
    /// at fault.
    fn audit_query(&self, request: pb::ListAuditEventsRequest) -> Result<AuditQuery, Status> {
        let non_empty = |text: String| (!text.trim().is_empty()).then(|| text.trim().to_owned());
        let method = match non_empty(request.method) {
            None => None,
            Some(method) if method.contains('/') => Some(method.trim_start_matches('/').to_owned()),
            Some(name) => {
                let mut full = self.methods.full_names(&name);
                match full.len() {
                    1 => full.pop(),
                    0 => {
                        return Err(invalid_field(
                            "method",
                            format!("no llmops RPC is named {name:?}"),
                        ))
                    }
                    _ => {
                        return Err(invalid_field(
                            "method",
                            format!("{name:?} is ambiguous: give one of {}", full.join(", ")),
                        ))
                    }
                }
            }
        };
        let time = |field: &str, stamp: Option<prost_types::Timestamp>| match stamp {
            None => Ok(None),
            Some(stamp) => time_from_timestamp(&stamp)
                .map(Some)
                .ok_or_else(|| invalid_field(field, "not a valid time")),
        };
        let before_id = match non_empty(request.page_token) {
            None => None,
            Some(token) => Some(
                uuid::Uuid::parse_str(&token)
                    .map_err(|_| invalid_field("page_token", "not a token this listing gave"))?
                    .to_string(),
            ),
        };
        let limit = match request.page_size as usize {
            0 => DEFAULT_AUDIT_PAGE,
            n => n.min(MAX_AUDIT_PAGE),
        };
        Ok(AuditQuery {
            actor: non_empty(request.actor),
            method,
            resource: non_empty(request.resource).map(|r| r.trim_end_matches('/').to_owned()),
            since: time("since", request.since)?,
            until: time("until", request.until)?,
            before_id,
            limit,
        })
    }
}

fn audit_event_to_pb(event: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        audit_event_id: event.id,
        time: Some(timestamp(event.time)),
        actor: event.actor,
        api_key_id: event.api_key_id,
        method: event.method,
        resource: event.resource,
        code: event.code,
        request_id: event.request_id,
    }
}

/// The proto role of `role`.
pub(crate) fn role_to_pb(role: Role) -> pb::Role {
    pb::Role::try_from(role.number()).unwrap_or(pb::Role::Unspecified)
}

fn key_to_pb(key: ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        api_key_id: key.id,
        name: key.name,
        role: role_to_pb(key.role).into(),
        description: key.description,
        created_at: Some(timestamp(key.created_at)),
        expires_at: key.expires_at.map(timestamp),
        revoked_at: key.revoked_at.map(timestamp),
        last_used_at: key.last_used_at.map(timestamp),
        secret_prefix: key.secret_prefix,
        requests_per_second: key.requests_per_second,
    }
}

fn required_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(invalid_field("api_key_id", "required"));
    }
    Ok(id)
}

#[tonic::async_trait]
impl AuthServiceRpc for AuthApi {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let request = request.into_inner();
        let expires_at = match &request.expires_at {
            Some(stamp) => Some(
                time_from_timestamp(stamp)
                    .ok_or_else(|| invalid_field("expires_at", "not a valid time"))?,
            ),
            None => None,
        };
        let spec = KeySpec {
            name: request.name,
            role: Role::from_number(request.role),
            description: request.description,
            expires_at,
            requests_per_second: request.requests_per_second,
        };
        let (key, secret) = self
            .keys
            .create(spec, chrono::Utc::now())
            .await
            .or_status()?;
        tracing::info!(key = %key.id, name = %key.name, role = %key.role, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(key_to_pb(key)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let request = request.into_inner();
        let page = self
            .keys
            .list(request.page_size as usize, &request.page_token)
            .or_status()?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.keys.into_iter().map(key_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let request = request.into_inner();
        let key = self
            .keys
            .get(required_id(&request.api_key_id)?)
            .or_status()?;
        Ok(Response::new(pb::GetApiKeyResponse {
            api_key: Some(key_to_pb(key)),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let key = self
            .keys
            .revoke(required_id(&request.api_key_id)?, chrono::Utc::now())
            .await
            .or_status()?;
        tracing::info!(key = %key.id, name = %key.name, by = %caller.identity, "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(key_to_pb(key)),
        }))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let query = self.audit_query(request.into_inner())?;
        // One more than a page tells whether another page follows.
        let mut events = self
            .audit
            .list_audit(&AuditQuery {
                limit: query.limit + 1,
                ..query.clone()
            })
            .await
            .map_err(llmops_core::ServiceError::from)
            .or_status()?;
        let more = events.len() > query.limit;
        events.truncate(query.limit);
        let next_page_token = match (more, events.last()) {
            (true, Some(last)) => last.id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: events.into_iter().map(audit_event_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller_of(&request);
        Ok(Response::new(pb::WhoAmIResponse {
            role: role_to_pb(caller.role).into(),
            identity: caller.identity.to_string(),
            api_key: caller.key.map(|key| key_to_pb(ApiKey::clone(&key))),
        }))
    }
}
