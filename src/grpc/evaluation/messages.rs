//! Conversions between the evaluation protos and the evaluator crate.

use llmops_evaluator::datasets::{Dataset, DatasetSpec, DatasetType, Sample};
use tonic::Status;

use crate::grpc::convert::{json_from_value, timestamp, value_from_json};
use crate::grpc::status::invalid_field;
use crate::pb;

pub(crate) fn type_from_pb(value: i32, field: &str) -> Result<Option<DatasetType>, Status> {
    Ok(match pb::DatasetType::try_from(value) {
        Ok(pb::DatasetType::Unspecified) => None,
        Ok(pb::DatasetType::Golden) => Some(DatasetType::Golden),
        Ok(pb::DatasetType::Regression) => Some(DatasetType::Regression),
        Ok(pb::DatasetType::Benchmark) => Some(DatasetType::Benchmark),
        Ok(pb::DatasetType::User) => Some(DatasetType::User),
        Err(_) => {
            return Err(invalid_field(
                field,
                format!("{value} is not a DatasetType"),
            ))
        }
    })
}

fn type_to_pb(value: DatasetType) -> pb::DatasetType {
    match value {
        DatasetType::Golden => pb::DatasetType::Golden,
        DatasetType::Regression => pb::DatasetType::Regression,
        DatasetType::Benchmark => pb::DatasetType::Benchmark,
        DatasetType::User => pb::DatasetType::User,
    }
}

pub(crate) fn spec_from_pb(dataset: pb::Dataset) -> Result<DatasetSpec, Status> {
    Ok(DatasetSpec {
        dataset_type: type_from_pb(dataset.r#type, "dataset.type")?.unwrap_or_default(),
        id: dataset.id,
        name: dataset.name,
        description: dataset.description,
        metadata: dataset.metadata.into_iter().collect(),
    })
}

pub(crate) fn dataset_to_pb(dataset: Dataset) -> pb::Dataset {
    pb::Dataset {
        r#type: type_to_pb(dataset.dataset_type).into(),
        id: dataset.id,
        name: dataset.name,
        description: dataset.description,
        metadata: dataset.metadata.into_iter().collect(),
        sample_count: dataset.sample_count,
        version: dataset.version,
        content_hash: dataset.content_hash,
        created_at: Some(timestamp(dataset.created_at)),
        updated_at: Some(timestamp(dataset.updated_at)),
    }
}

pub(crate) fn sample_from_pb(sample: pb::Sample) -> Sample {
    Sample {
        id: sample.id,
        input: sample.input.map(json_from_value).unwrap_or_default(),
        expected_output: sample.expected_output,
        context: sample.context,
        metadata: sample.metadata.into_iter().collect(),
    }
}

pub(crate) fn sample_to_pb(sample: Sample) -> pb::Sample {
    pb::Sample {
        input: Some(value_from_json(&sample.input)),
        id: sample.id,
        expected_output: sample.expected_output,
        context: sample.context,
        metadata: sample.metadata.into_iter().collect(),
    }
}
