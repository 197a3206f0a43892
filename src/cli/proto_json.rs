//! `--json` output: the proto3 JSON mapping of the messages the server answered, as
//! grpcurl and every other gRPC tool print them (lowerCamelCase field names, enum value
//! names, 64-bit integers as strings, RFC 3339 times), with fields at their default
//! values included so scripts always find every key.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value as JsonValue;

use crate::pb;

/// Every llmops message, from the descriptor set the server's reflection serves.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the built-in descriptor set decodes")
});

/// `message` in the proto3 JSON mapping.
pub(crate) fn message<M: prost::Message + prost::Name>(message: &M) -> JsonValue {
    let name = M::full_name();
    let descriptor = POOL
        .get_message_by_name(&name)
        .unwrap_or_else(|| panic!("{name} is in the built-in descriptor set"));
    // The message was decoded from (or built for) this very schema: re-decoding its
    // bytes cannot fail.
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message decodes against its own descriptor");
    let options = SerializeOptions::new().skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("a message serializes to JSON")
}

/// Each of `messages` in the proto3 JSON mapping, as an array.
pub(crate) fn messages<M: prost::Message + prost::Name>(messages: &[M]) -> JsonValue {
    JsonValue::Array(messages.iter().map(message).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_as_every_grpc_tool_prints_them() {
        let run = pb::Run {
            id: "r1".into(),
            dataset_id: "d1".into(),
            status: pb::RunStatus::Completed as i32,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = message(&run);
        assert_eq!(json["datasetId"], "d1", "lowerCamelCase field names");
        assert_eq!(json["status"], "RUN_STATUS_COMPLETED", "enum value names");
        assert_eq!(json["createdAt"], "2023-11-14T22:13:20Z", "RFC 3339 times");
        assert_eq!(json["description"], "", "defaults are printed");
        let listed = messages(&[run.clone(), run]);
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
    }
}
