//! Release gate messages: protobuf <-> the evaluator's gate type.

use chrono::Utc;
use llmops_evaluator::gates::ReleaseGate;

use crate::grpc::convert::timestamp;
use crate::pb;

pub(crate) fn gate_from_pb(gate: pb::ReleaseGate) -> ReleaseGate {
    // Times are the server's to set.
    let now = Utc::now();
    ReleaseGate {
        prompt_name: gate.prompt_name,
        label: gate.label,
        dataset_id: gate.dataset_id,
        model: gate.model,
        min_pass_rate: gate.min_pass_rate,
        no_regression: gate.no_regression,
        created_at: now,
        updated_at: now,
    }
}

pub(crate) fn gate_to_pb(gate: ReleaseGate) -> pb::ReleaseGate {
    pb::ReleaseGate {
        prompt_name: gate.prompt_name,
        label: gate.label,
        dataset_id: gate.dataset_id,
        model: gate.model,
        min_pass_rate: gate.min_pass_rate,
        no_regression: gate.no_regression,
        created_at: Some(timestamp(gate.created_at)),
        updated_at: Some(timestamp(gate.updated_at)),
    }
}
