//! DynamoDB tables, with their global secondary indexes and time to live.

use super::names::LocalNames;
use super::{Active, Clients, ProvisionError, emulator, unsupported};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Properties {
    key_schema: Vec<Key>,
    attribute_definitions: Vec<Attribute>,
    #[serde(default)]
    global_secondary_indexes: Vec<Index>,
    #[serde(default)]
    local_secondary_indexes: Option<Value>,
    #[serde(default)]
    time_to_live_specification: Option<TimeToLive>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Key {
    attribute_name: String,
    key_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Index {
    index_name: String,
    key_schema: Vec<Key>,
    projection: IndexProjection,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IndexProjection {
    #[serde(default)]
    projection_type: Option<String>,
    #[serde(default)]
    non_key_attributes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TimeToLive {
    attribute_name: String,
    #[serde(default)]
    enabled: Option<bool>,
}

fn key_schema(id: &str, keys: &[Key]) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    keys.iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(&key.attribute_name)
                .key_type(KeyType::from(key.key_type.as_str()))
                .build()
                .map_err(emulator(id))
        })
        .collect()
}

/// Creates the tables; returns their names by logical id.
pub(super) async fn create(
    active: &Active<'_>,
    names: &LocalNames<'_>,
    clients: &Clients,
) -> Result<BTreeMap<String, String>, ProvisionError> {
    let mut tables = BTreeMap::new();
    for (id, resource) in active.of_type("AWS::DynamoDB::Table") {
        let p: Properties = super::properties(id, resource, names)?;
        if p.local_secondary_indexes.is_some() {
            return Err(unsupported(
                id,
                "local secondary indexes are not supported locally yet",
            ));
        }
        let name = names.physical(id);
        let mut create = clients
            .dynamodb
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(id, &p.key_schema)?));
        for index in &p.global_secondary_indexes {
            let gsi = GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(id, &index.key_schema)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index.projection.projection_type.as_deref().unwrap_or("ALL"),
                        ))
                        .set_non_key_attributes(index.projection.non_key_attributes.clone())
                        .build(),
                )
                .build()
                .map_err(emulator(id))?;
            create = create.global_secondary_indexes(gsi);
        }
        for attribute in &p.attribute_definitions {
            let definition = AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()
                .map_err(emulator(id))?;
            create = create.attribute_definitions(definition);
        }
        create.send().await.map_err(emulator(id))?;
        if let Some(ttl) = &p.time_to_live_specification {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(&ttl.attribute_name)
                .enabled(ttl.enabled.unwrap_or(true))
                .build()
                .map_err(emulator(id))?;
            clients
                .dynamodb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(emulator(id))?;
        }
        tables.insert(id.to_owned(), name);
    }
    Ok(tables)
}
