//! Benchmark (not a test): reservations a second on one hot SKU through the stock
//! adapter, against the emulator at `AWS_ENDPOINT_URL` with the template's inventory
//! table. `concurrency` reservers each take one unit per order until every order is
//! decided; the run reports decisions a second and checks the sale was exact.
//!
//! ```sh
//! cargo build -p shop-aws --example hot_sku
//! .venv/bin/python local/moto_server.py --run -- target/debug/examples/hot_sku 400 100 5
//! SHOP_DYNAMODB_CONFLICTS=off .venv/bin/python local/moto_server.py --run -- \
//!     target/debug/examples/hot_sku 400 100 5
//! ```

use futures::StreamExt;
use local_runtime::Template;
use local_runtime::provision::{Clients, provision};
use shop_aws::stock::DynamoStockStore;
use shop_domain::ports::ReserveOutcome;
use shop_domain::ports::StockStore;
use shop_domain::{OrderId, OrderLine, Sku};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let [orders, units, concurrency] = args[..] else {
        return Err("usage: hot_sku ORDERS UNITS CONCURRENCY".into());
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let template =
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml"))?;
    let stack = provision(
        &template,
        "hot",
        &BTreeMap::new(),
        &Clients::new(&sdk),
        "us-east-1",
    )
    .await?;
    let stock = DynamoStockStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &stack.tables["InventoryTable"],
    );
    let hot = Sku("HOT".into());
    stock.restock(&hot, u32::try_from(units)?).await?;
    let line = OrderLine {
        sku: hot.clone(),
        quantity: 1,
        unit_price: 100,
    };
    let started = Instant::now();
    let outcomes: Vec<_> = futures::stream::iter(0..orders)
        .map(|_| {
            let (stock, line) = (stock.clone(), line.clone());
            async move {
                stock
                    .reserve(&OrderId::generate(), std::slice::from_ref(&line))
                    .await
            }
        })
        .buffer_unordered(usize::try_from(concurrency)?)
        .collect()
        .await;
    let took = started.elapsed();
    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ReserveOutcome::Reserved)))
        .count();
    let sold_out = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(ReserveOutcome::OutOfStock(_))))
        .count();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let level = stock.level(&hot).await?.ok_or("the SKU vanished")?;
    println!(
        "{orders} orders, {units} units, {concurrency} at once: {:.1} decisions/s ({:.2} s); \
         reserved {reserved}, sold out {sold_out}, failed {failed}; stock left {}, held {}",
        orders as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        level.available,
        level.reserved,
    );
    let conserved = level.available + level.reserved == units;
    if reserved as u64 != units.min(orders) || failed > 0 || !conserved {
        return Err("the sale was not exact".into());
    }
    Ok(())
}
