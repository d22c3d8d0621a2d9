//! Demo catalog and stock, loaded into a fresh stack.

use serde::Deserialize;
use shop_aws::catalog::{CatalogItem, DynamoCatalog};
use shop_aws::stock::DynamoStockStore;
use shop_domain::Sku;
use shop_domain::ports::{PortError, PriceList, StockStore};
use std::path::Path;

/// A seed file: catalog items with their opening stock.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// Items to sell.
    pub catalog: Vec<SeedItem>,
}

/// One item of a seed file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedItem {
    /// SKU.
    pub sku: Sku,
    /// Display name.
    pub name: String,
    /// Unit price per currency, minor units.
    pub prices: PriceList,
    /// Opening stock.
    pub stock: u32,
}

/// A seed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Unreadable file.
    #[error("cannot read seed file {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// Not a seed document.
    #[error("seed file {0} is invalid: {1}")]
    Invalid(String, #[source] serde_json::Error),
    /// Writing to the emulator failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

impl Seed {
    /// Reads a seed file.
    pub fn load(path: &Path) -> Result<Self, SeedError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SeedError::Read(shown.clone(), e))?;
        serde_json::from_str(&text).map_err(|e| SeedError::Invalid(shown, e))
    }

    /// Writes the catalog and the opening stock.
    pub async fn apply(
        &self,
        catalog: &DynamoCatalog,
        stock: &DynamoStockStore,
    ) -> Result<(), SeedError> {
        for item in &self.catalog {
            catalog
                .put(&CatalogItem {
                    sku: item.sku.clone(),
                    name: item.name.clone(),
                    prices: item.prices.clone(),
                })
                .await?;
            stock.restock(&item.sku, item.stock).await?;
        }
        Ok(())
    }
}
