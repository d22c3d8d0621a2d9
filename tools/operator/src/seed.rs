//! A catalog and its stock, loaded into a stack: by `shop local` at start and by
//! `shop seed` into a deployed or running one, through the same adapters the
//! functions use (the catalog table, and the stock store's restock, which is the
//! inventory service's restock path). Loading twice changes nothing.

use serde::Deserialize;
use shop_aws::catalog::{CatalogItem, DynamoCatalog};
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

    /// Writes the catalog (overwriting each item) and restocks each SKU whose units on
    /// hand (available and reserved) are below its seed stock by the difference, so a
    /// second run adds nothing. Returns the units added per SKU.
    pub async fn apply(
        &self,
        catalog: &DynamoCatalog,
        stock: &dyn StockStore,
    ) -> Result<Vec<(Sku, u32)>, SeedError> {
        let mut added = Vec::with_capacity(self.catalog.len());
        for item in &self.catalog {
            catalog
                .put(&CatalogItem {
                    sku: item.sku.clone(),
                    name: item.name.clone(),
                    prices: item.prices.clone(),
                })
                .await?;
            let on_hand = stock
                .level(&item.sku)
                .await?
                .map(|l| l.available + l.reserved)
                .unwrap_or(0);
            let missing = u64::from(item.stock).saturating_sub(on_hand);
            let missing = u32::try_from(missing).unwrap_or(u32::MAX);
            if missing > 0 {
                stock.restock(&item.sku, missing).await?;
            }
            added.push((item.sku.clone(), missing));
        }
        Ok(added)
    }
}
