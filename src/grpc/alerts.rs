//! `llmops.v1.AlertService` on top of the alerts crate.

mod messages;

use std::sync::Arc;
use std::time::Duration;

use llmops_alerts::{AlertFilter, AlertService, SubscriptionFilter};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use self::messages::{
    alert_id, alert_to_pb, decode_page_token, encode_page_token, event_to_pb, heartbeat, new_alert,
    time,
};
use crate::grpc::status::{invalid_field, OrStatus as _};
use crate::grpc::{response_stream, ResponseStream};
use crate::pb;
use crate::pb::alert_service_server::AlertService as AlertServiceRpc;
use crate::server::access::caller_of;
use crate::server::audit::with_audit_resource;

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;
const MAX_ACK_BY_BYTES: usize = 256;
const MAX_COMMENT_BYTES: usize = 8 * 1024;

/// The AlertService adapter.
#[derive(Debug, Clone)]
pub struct AlertApi {
    alerts: Arc<AlertService>,
    heartbeat: Duration,
    shutdown: CancellationToken,
}

impl AlertApi {
    /// An adapter over the alert service; subscriptions send a heartbeat every
    /// `heartbeat` and end at `shutdown`.
    pub fn new(
        alerts: Arc<AlertService>,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            alerts,
            heartbeat,
            shutdown,
        }
    }
}

/// Open subscriptions, as a gauge; decremented in `Drop`, so every way a subscription
/// ends (disconnect, shutdown, error) is counted.
pub(crate) const SUBSCRIBERS_GAUGE: &str = "llmops_alert_subscribers";

struct SubscriberGauge;

impl SubscriberGauge {
    fn enter() -> Self {
        metrics::gauge!(SUBSCRIBERS_GAUGE).increment(1.0);
        Self
    }
}

impl Drop for SubscriberGauge {
    fn drop(&mut self) {
        metrics::gauge!(SUBSCRIBERS_GAUGE).decrement(1.0);
    }
}

/// One subscriber's state; dropping it (the client went away) unsubscribes.
struct Subscriber {
    subscription: llmops_alerts::Subscription<llmops_alerts::AlertEvent>,
    heartbeats: tokio::time::Interval,
    _counted: SubscriberGauge,
}

impl Subscriber {
    /// The next event or heartbeat. A slow client simply polls later: the subscription
    /// falls behind the live feed and catches up from storage, losing nothing.
    async fn next(mut self) -> Option<(Result<pb::AlertEvent, Status>, Self)> {
        let item = tokio::select! {
            // The subscriber's own cursor is the sequence it may safely resume from:
            // everything up to it has been delivered or did not match.
            _ = self.heartbeats.tick() => Ok(heartbeat(self.subscription.cursor())),
            event = self.subscription.next() => match event {
                Ok(Some(event)) => Ok(event_to_pb(&event)),
                Ok(None) => return None,
                Err(message) => Err(Status::unavailable(message)),
            },
        };
        Some((item, self))
    }
}

#[tonic::async_trait]
impl AlertServiceRpc for AlertApi {
    async fn create_alert(
        &self,
        request: Request<pb::CreateAlertRequest>,
    ) -> Result<Response<pb::CreateAlertResponse>, Status> {
        let pb::CreateAlertRequest { alert } = request.into_inner();
        let alert = new_alert(alert.ok_or_else(|| invalid_field("alert", "alert is required"))?)?;
        let raised = self.alerts.create(alert).await.or_status()?;
        let id = raised.alert.id.to_string();
        Ok(with_audit_resource(
            Response::new(pb::CreateAlertResponse {
                alert: Some(alert_to_pb(&raised.alert)),
                deduplicated: raised.deduplicated,
            }),
            id,
        ))
    }

    async fn get_alert(
        &self,
        request: Request<pb::GetAlertRequest>,
    ) -> Result<Response<pb::GetAlertResponse>, Status> {
        let id = alert_id(&request.into_inner().alert_id)?;
        let alert = self.alerts.get(id).await.or_status()?;
        Ok(Response::new(pb::GetAlertResponse {
            alert: Some(alert_to_pb(&alert)),
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let pb::ListAlertsRequest {
            types,
            severities,
            statuses,
            source,
            source_id,
            unacknowledged_only,
            since,
            until,
            page_size,
            page_token,
        } = request.into_inner();
        let filter = AlertFilter {
            types: types
                .into_iter()
                .map(|t| messages::alert_type(t, "types"))
                .collect::<Result<_, _>>()?,
            severities: severities
                .into_iter()
                .map(|s| messages::severity(s, "severities"))
                .collect::<Result<_, _>>()?,
            statuses: statuses
                .into_iter()
                .map(|s| messages::status(s, "statuses"))
                .collect::<Result<_, _>>()?,
            source: (!source.is_empty()).then_some(source),
            source_id: (!source_id.is_empty()).then_some(source_id),
            unacknowledged_only,
            since: time(since, "since")?,
            until: time(until, "until")?,
        };
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(invalid_field("page_size", "page_size must not be negative")),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let cursor = decode_page_token(&page_token)?;
        let mut alerts = self
            .alerts
            .list(&filter, cursor, page_size + 1)
            .await
            .or_status()?;
        let more = alerts.len() > page_size;
        alerts.truncate(page_size);
        let next_page_token = match (more, alerts.last()) {
            (true, Some(last)) => encode_page_token(last),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.iter().map(alert_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::AcknowledgeAlertResponse>, Status> {
        let caller = caller_of(&request);
        let pb::AcknowledgeAlertRequest {
            alert_id: id,
            mut acknowledged_by,
            comment,
        } = request.into_inner();
        // Who acknowledged, when the client did not say: the caller's key or certificate.
        if let (true, Some(actor)) = (acknowledged_by.is_empty(), caller.actor()) {
            acknowledged_by = actor.to_owned();
        }
        let id = alert_id(&id)?;
        if acknowledged_by.len() > MAX_ACK_BY_BYTES {
            return Err(invalid_field(
                "acknowledged_by",
                format!("longer than {MAX_ACK_BY_BYTES} bytes"),
            ));
        }
        if comment.len() > MAX_COMMENT_BYTES {
            return Err(invalid_field(
                "comment",
                format!("longer than {MAX_COMMENT_BYTES} bytes"),
            ));
        }
        let alert = self
            .alerts
            .acknowledge(id, &acknowledged_by, &comment)
            .await
            .or_status()?;
        Ok(Response::new(pb::AcknowledgeAlertResponse {
            alert: Some(alert_to_pb(&alert)),
        }))
    }

    async fn resolve_alert(
        &self,
        request: Request<pb::ResolveAlertRequest>,
    ) -> Result<Response<pb::ResolveAlertResponse>, Status> {
        let id = alert_id(&request.into_inner().alert_id)?;
        let alert = self.alerts.resolve(id).await.or_status()?;
        Ok(Response::new(pb::ResolveAlertResponse {
            alert: Some(alert_to_pb(&alert)),
        }))
    }

    type SubscribeStream = ResponseStream<pb::AlertEvent>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let pb::SubscribeRequest {
            types,
            min_severity,
            sources,
            after_sequence,
        } = request.into_inner();
        let filter = SubscriptionFilter {
            types: types
                .into_iter()
                .map(|t| messages::alert_type(t, "types"))
                .collect::<Result<_, _>>()?,
            min_severity: match min_severity {
                0 => None,
                value => Some(messages::severity(value, "min_severity")?),
            },
            sources,
        };
        let subscription = self
            .alerts
            .subscribe(filter, after_sequence)
            .await
            .or_status()?;
        let mut heartbeats = tokio::time::interval(self.heartbeat);
        heartbeats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeats.reset();
        let subscriber = Subscriber {
            subscription,
            heartbeats,
            _counted: SubscriberGauge::enter(),
        };
        Ok(Response::new(response_stream(
            &self.shutdown,
            subscriber,
            Subscriber::next,
        )))
    }
}
