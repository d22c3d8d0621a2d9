//! The product catalog in DynamoDB: `sku` key, `prices` map of currency to minor units.

use crate::port_error;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use serde::{Deserialize, Serialize};
use shop_domain::Sku;
use shop_domain::ports::{Catalog, PortError, PriceList};
use std::collections::HashMap;

/// One catalog item as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogItem {
    /// Key.
    pub sku: Sku,
    /// Display name.
    pub name: String,
    /// Unit price per currency in minor units.
    pub prices: PriceList,
}

/// Catalog reads by BatchGetItem.
#[derive(Clone)]
pub struct DynamoCatalog {
    client: Client,
    table: String,
}

impl DynamoCatalog {
    /// Catalog over the given table.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Writes an item (seeding and operator tooling).
    pub async fn put(&self, item: &CatalogItem) -> Result<(), PortError> {
        let item = serde_dynamo::to_item(item).map_err(|e| port_error("catalog.put", e))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| port_error("catalog.put", e))?;
        Ok(())
    }
}

#[async_trait]
impl Catalog for DynamoCatalog {
    async fn prices(&self, skus: &[Sku]) -> Result<HashMap<Sku, PriceList>, PortError> {
        let mut found = HashMap::new();
        let keys: Vec<_> = skus
            .iter()
            .map(|s| HashMap::from([("sku".to_string(), AttributeValue::S(s.0.clone()))]))
            .collect();
        let mut pending = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .build()
                .map_err(|e| port_error("catalog.prices", e))?,
        );
        for attempt in 0..5u32 {
            let Some(request) = pending.take() else { break };
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| port_error("catalog.prices", e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.table))
                .unwrap_or_default()
            {
                let item: CatalogItem =
                    serde_dynamo::from_item(item).map_err(|e| port_error("catalog.prices", e))?;
                found.insert(item.sku, item.prices);
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.table))
                .filter(|k| !k.keys.is_empty());
            if pending.is_some() {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
        }
        if pending.is_some() {
            return Err(PortError::new(
                "catalog.prices",
                "keys left unprocessed after retries",
            ));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    //! BatchGetItem leaving keys unprocessed (under throttling): moto never does, so
    //! these run on replayed answers.
    use super::*;
    use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn item(sku: &str, cents: u64) -> HashMap<String, AttributeValue> {
        serde_dynamo::to_item(CatalogItem {
            sku: Sku(sku.into()),
            name: sku.into(),
            prices: HashMap::from([(shop_domain::Currency::EUR, cents)]),
        })
        .unwrap()
    }

    fn unprocessed(sku: &str) -> KeysAndAttributes {
        KeysAndAttributes::builder()
            .keys(HashMap::from([(
                "sku".to_string(),
                AttributeValue::S(sku.into()),
            )]))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn unprocessed_keys_are_read_again_until_every_price_is_known() {
        let first = mock!(Client::batch_get_item)
            .match_requests(|r| {
                r.request_items()
                    .is_some_and(|i| i["catalog"].keys().len() == 2)
            })
            .then_output(|| {
                BatchGetItemOutput::builder()
                    .responses("catalog", vec![item("A", 100)])
                    .unprocessed_keys("catalog", unprocessed("B"))
                    .build()
            });
        let rest = mock!(Client::batch_get_item)
            .match_requests(|r| {
                r.request_items()
                    .is_some_and(|i| i["catalog"].keys().len() == 1)
            })
            .then_output(|| {
                BatchGetItemOutput::builder()
                    .responses("catalog", vec![item("B", 250)])
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&first, &rest]);
        let prices = DynamoCatalog::new(client, "catalog")
            .prices(&[Sku("A".into()), Sku("B".into())])
            .await
            .unwrap();
        assert_eq!(prices.len(), 2);
        assert_eq!(prices[&Sku("B".into())][&shop_domain::Currency::EUR], 250);
        assert_eq!((first.num_calls(), rest.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn keys_left_unprocessed_after_every_attempt_are_an_error() {
        let throttled = mock!(Client::batch_get_item)
            .sequence()
            .output(|| {
                BatchGetItemOutput::builder()
                    .unprocessed_keys("catalog", unprocessed("A"))
                    .build()
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&throttled]);
        let err = DynamoCatalog::new(client, "catalog")
            .prices(&[Sku("A".into())])
            .await
            .unwrap_err();
        assert!(format!("{err:?}").contains("unprocessed"), "{err:?}");
        assert_eq!(throttled.num_calls(), 5);
    }
}
