//! `llmops.v1.AuthService` on top of the key service.

use std::sync::Arc;

use llmops_access::{ApiKey, KeyService, KeySpec, Role};
use tonic::{Request, Response, Status};

use crate::grpc::convert::{time_from_timestamp, timestamp};
use crate::grpc::status::{invalid_field, OrStatus as _};
use crate::pb;
use crate::pb::auth_service_server::AuthService as AuthServiceRpc;
use crate::server::access::caller_of;

/// The AuthService adapter.
#[derive(Debug, Clone)]
pub struct AuthApi {
    keys: Arc<KeyService>,
}

impl AuthApi {
    /// An adapter over the key service.
    pub fn new(keys: Arc<KeyService>) -> Self {
        Self { keys }
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
