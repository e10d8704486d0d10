//! Payments matched to orders within 10 minutes (an interval join), and orders left unpaid
//! (the same join, left outer: an order with no payment in time comes out with nulls).
//!
//! `cargo run --example payments_join`

use std::time::Duration;

use rstreams::core::datafusion::prelude::col;
use rstreams::core::dsl::Pipeline;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone)]
struct Order {
    order_id: i64,
    customer: String,
    amount_cents: i64,
    ts: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct Payment {
    order_ref: i64,
    paid_cents: i64,
    pay_ts: i64,
}

#[derive(Deserialize, Debug)]
struct Match {
    order_id: i64,
    customer: String,
    amount_cents: i64,
    paid_cents: Option<i64>,
}

const BASE: i64 = 1_767_225_600_000;

/// 300 orders a few seconds apart. Orders divisible by 7 are never paid, those divisible by 5
/// are paid 20 minutes late (too late), the others within 1 to 9 minutes.
fn data() -> (Vec<Order>, Vec<Payment>) {
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    for i in 0..300i64 {
        let ts = BASE + i * 4_000;
        orders.push(Order {
            order_id: i,
            customer: format!("c{}", i % 23),
            amount_cents: 500 + i * 10,
            ts,
        });
        if i % 7 == 0 {
            continue;
        }
        let delay = if i % 5 == 0 { 20 } else { 1 + i % 9 };
        payments.push(Payment {
            order_ref: i,
            paid_cents: 500 + i * 10,
            pay_ts: ts + delay * 60_000,
        });
    }
    payments.sort_by_key(|p| p.pay_ts);
    (orders, payments)
}

#[tokio::main]
async fn main() -> rstreams::core::Result<()> {
    let (orders, payments) = data();
    let p = Pipeline::new().parallelism(2);
    let orders_stream = p
        .from_iter("orders", orders.clone())?
        .event_time("ts", Duration::from_secs(1))?;
    let payments_stream = p
        .from_iter("payments", payments)?
        .event_time("pay_ts", Duration::from_secs(1))?;
    let matched = orders_stream
        .join(payments_stream)
        .on(col("order_id"), col("order_ref"))
        .left_outer()
        // A payment counts if it comes at most 10 minutes after its order.
        .within(Duration::ZERO, Duration::from_secs(600))?
        .select([
            col("order_id"),
            col("customer"),
            col("amount_cents"),
            col("paid_cents"),
        ])?
        .collect::<Match>()?;
    p.execute()?.wait().await?;

    let rows = matched.rows()?;
    let paid: Vec<&Match> = rows.iter().filter(|m| m.paid_cents.is_some()).collect();
    let unpaid: Vec<&Match> = rows.iter().filter(|m| m.paid_cents.is_none()).collect();
    println!("{} orders paid in time, {} not:", paid.len(), unpaid.len());
    for m in unpaid.iter().take(5) {
        println!(
            "  order {} of {} ({} cents)",
            m.order_id, m.customer, m.amount_cents
        );
    }
    let expect_paid = (0..300).filter(|i| i % 7 != 0 && i % 5 != 0).count();
    assert_eq!(paid.len(), expect_paid);
    assert_eq!(unpaid.len(), orders.len() - expect_paid);
    assert!(paid.iter().all(|m| m.paid_cents == Some(m.amount_cents)));
    println!("OK");
    Ok(())
}
