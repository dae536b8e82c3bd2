//! The lease table in DynamoDB: the conditional writes that make leases safe.
//!
//! One item per policy (`pk = "policy#<name>"`) with `holder`, a fencing `token` and
//! `expires_ms` (epoch milliseconds on the writer's clock), and one membership item per running
//! daemon (`pk = "member#<holder>"`, `expires_ms`, and `ttl` in epoch seconds for DynamoDB's
//! own clean-up of members long gone). Every write is conditional, so DynamoDB orders them:
//! - [`LeaseTable::take`]: succeeds when the lease is missing, expired or released (or was
//!   left by an earlier run under this daemon's holder name), and always increments the
//!   token, so two holders never share a token and tokens only grow;
//! - [`LeaseTable::extend`] (renewal, and the fence before every mutating call): succeeds only
//!   while this holder still holds the lease under the same token and it has not expired;
//! - [`LeaseTable::release`]: hands the lease back (holder removed, token kept).
//!
//! A lease item also carries a `handover` text the holder writes with its fence and the next
//! holder reads when it takes the lease (the pool's latest scaling records, so cooldowns
//! survive a change of host).
//!
//! Lease items deliberately carry no DynamoDB TTL attribute: deleting one would restart its
//! token at 1. Only membership items expire that way.
//!
//! Not here: who takes which lease (fair share, see [`crate::lease`]), timers, or reading the
//! clock (every `now` is the caller's).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use jiff::Timestamp;

use super::Aws;
use crate::clock::later;

/// The table's partition key (a string).
pub const KEY: &str = "pk";
/// The attribute DynamoDB's TTL clean-up reads on membership items (epoch seconds).
pub const TTL_ATTRIBUTE: &str = "ttl";
/// The lease item's attribute carrying what one holder leaves for the next.
pub const HANDOVER: &str = "handover";
/// How long past its expiry a membership item is left for DynamoDB to delete.
const MEMBER_CLEANUP: Duration = Duration::from_secs(3600);

/// Checks, right before a mutating AWS call, that this daemon may still act on a pool.
/// `Err` carries why not; the call is then not made.
pub trait Fence: Send + Sync {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// A lease as its holder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub policy: String,
    pub holder: String,
    pub token: u64,
    pub expires: Timestamp,
    /// What the previous holders left for the next one (the pool's latest scaling records,
    /// see `daemon::leases`), as read when this lease was taken; opaque here.
    pub handover: Option<String>,
}

/// A policy's lease item as read from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub policy: String,
    /// `None` once released.
    pub holder: Option<String>,
    pub token: u64,
    /// Until when the holder may act; for a released lease, when it was released.
    pub expires: Timestamp,
}

impl LeaseRecord {
    /// The holder, while the lease is live at `now`.
    pub fn live_holder(&self, now: Timestamp) -> Option<&str> {
        self.holder.as_deref().filter(|_| self.expires > now)
    }
}

/// A daemon's membership item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub holder: String,
    pub expires: Timestamp,
}

/// The whole table at one consistent read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    pub leases: BTreeMap<String, LeaseRecord>,
    pub members: Vec<MemberRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease table {table}: {operation}: {message}")]
    Api { table: String, operation: &'static str, message: String },
    #[error("lease table {table}: item {key}: {message}")]
    Malformed { table: String, key: String, message: String },
}

/// The lease table, through the daemon's DynamoDB client (calls counted in [`ApiStats`]).
#[derive(Clone)]
pub struct LeaseTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl fmt::Debug for LeaseTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseTable").field("table", &self.table).finish_non_exhaustive()
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn lease_key(policy: &str) -> String {
    format!("policy#{policy}")
}

fn member_key(holder: &str) -> String {
    format!("member#{holder}")
}

/// The names and values a condition on `lease` being held uses: `#h = :me`, `#t = :tok`,
/// `#e` against `:now`.
fn held_by(update: UpdateItemFluentBuilder, lease: &Lease, now: Timestamp) -> UpdateItemFluentBuilder {
    let token = i64::try_from(lease.token).unwrap_or(i64::MAX);
    update
        .expression_attribute_names("#h", "holder")
        .expression_attribute_names("#e", "expires_ms")
        .expression_attribute_names("#t", "token")
        .expression_attribute_values(":me", s(&lease.holder))
        .expression_attribute_values(":tok", n(token))
        .expression_attribute_values(":now", n(ms(now)))
}

fn is_condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

impl LeaseTable {
    pub fn new(aws: &Aws, table: &str) -> LeaseTable {
        LeaseTable { client: aws.dynamodb.clone(), table: table.to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.table
    }

    fn api_error<E: std::error::Error + 'static>(&self, operation: &'static str, e: &SdkError<E>) -> LeaseError {
        LeaseError::Api { table: self.table.clone(), operation, message: DisplayErrorContext(e).to_string() }
    }

    /// Creates the table (on-demand capacity, TTL clean-up on [`TTL_ATTRIBUTE`]) unless it
    /// exists; waits up to a minute for it to become active.
    pub async fn create(&self) -> Result<bool, LeaseError> {
        let build = |e: aws_smithy_types::error::operation::BuildError| LeaseError::Api {
            table: self.table.clone(),
            operation: "CreateTable",
            message: e.to_string(),
        };
        let attribute = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)?;
        let key = KeySchemaElement::builder().attribute_name(KEY).key_type(KeyType::Hash).build().map_err(build)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(attribute)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => return Ok(false),
            Err(e) => return Err(self.api_error("CreateTable", &e)),
        }
        for _ in 0..60 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.api_error("DescribeTable", &e))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let spec =
            TimeToLiveSpecification::builder().attribute_name(TTL_ATTRIBUTE).enabled(true).build().map_err(build)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await
            .map_err(|e| self.api_error("UpdateTimeToLive", &e))?;
        Ok(true)
    }

    /// Every lease and member, read with strong consistency.
    pub async fn read(&self) -> Result<TableView, LeaseError> {
        let mut view = TableView::default();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.api_error("Scan", &e))?;
            for item in page.items() {
                self.add_item(&mut view, item)?;
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(view)
    }

    fn add_item(&self, view: &mut TableView, item: &HashMap<String, AttributeValue>) -> Result<(), LeaseError> {
        let key = item.get(KEY).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let bad = |message: &str| LeaseError::Malformed {
            table: self.table.clone(),
            key: key.clone(),
            message: message.to_owned(),
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        let expires = number("expires_ms")
            .and_then(|m| Timestamp::from_millisecond(m).ok())
            .ok_or_else(|| bad("no valid expires_ms"))?;
        if let Some(policy) = key.strip_prefix("policy#") {
            let token = number("token").and_then(|t| u64::try_from(t).ok()).ok_or_else(|| bad("no valid token"))?;
            let record = LeaseRecord { policy: policy.to_owned(), holder: text("holder"), token, expires };
            view.leases.insert(policy.to_owned(), record);
        } else if let Some(holder) = key.strip_prefix("member#") {
            view.members.push(MemberRecord { holder: holder.to_owned(), expires });
        }
        // Anything else in the table is not ours to interpret.
        Ok(())
    }

    /// Writes `holder`'s membership, live until `now + ttl`.
    pub async fn heartbeat(&self, holder: &str, now: Timestamp, ttl: Duration) -> Result<(), LeaseError> {
        let expires = later(now, ttl);
        let cleanup = later(expires, MEMBER_CLEANUP).as_second();
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&member_key(holder)))
            .update_expression("SET #h = :me, #e = :exp, #ttl = :ttl")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "expires_ms")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":me", s(holder))
            .expression_attribute_values(":exp", n(ms(expires)))
            .expression_attribute_values(":ttl", n(cleanup))
            .send()
            .await
            .map_err(|e| self.api_error("UpdateItem", &e))?;
        Ok(())
    }

    /// Ends `holder`'s membership at `now` (clean shutdown).
    pub async fn leave(&self, holder: &str, now: Timestamp) -> Result<(), LeaseError> {
        self.heartbeat(holder, now, Duration::ZERO).await
    }

    /// Takes the lease on `policy` for `holder` until `now + ttl` when it is missing, expired,
    /// released or recorded under `holder` itself; `None` when someone else holds it. The
    /// token is incremented on every take.
    pub async fn take(
        &self,
        policy: &str,
        holder: &str,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<Option<Lease>, LeaseError> {
        let expires = later(now, ttl);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease_key(policy)))
            .update_expression("SET #h = :me, #e = :exp, #c = :now ADD #t :one")
            .condition_expression("attribute_not_exists(#k) OR attribute_not_exists(#h) OR #e <= :now OR #h = :me")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#h", "holder")
            .expression_attribute_names("#e", "expires_ms")
            .expression_attribute_names("#c", "taken_ms")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":me", s(holder))
            .expression_attribute_values(":exp", n(ms(expires)))
            .expression_attribute_values(":now", n(ms(now)))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let token = out
                    .attributes()
                    .and_then(|a| a.get("token"))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| LeaseError::Malformed {
                        table: self.table.clone(),
                        key: lease_key(policy),
                        message: "no token returned after a take".to_owned(),
                    })?;
                let handover = out.attributes().and_then(|a| a.get(HANDOVER)).and_then(|v| v.as_s().ok()).cloned();
                Ok(Some(Lease { policy: policy.to_owned(), holder: holder.to_owned(), token, expires, handover }))
            }
            Err(e) if is_condition_failed(&e) => Ok(None),
            Err(e) => Err(self.api_error("UpdateItem", &e)),
        }
    }

    /// Extends `lease` to `now + ttl` if its holder still holds it under the same token and it
    /// has not expired at `now`; `None` when it was lost. This is both the renewal and the
    /// fence: DynamoDB evaluates the condition on the latest write, so a lease taken over by
    /// another daemon (a higher token) can never be extended or acted under again.
    pub async fn extend(&self, lease: &Lease, now: Timestamp, ttl: Duration) -> Result<Option<Lease>, LeaseError> {
        self.extend_with(lease, now, ttl, None).await
    }

    /// [`LeaseTable::extend`], writing `handover` for the next holder in the same conditional
    /// write (the fence before a mutating call records the scaling it is about to make).
    pub async fn extend_with(
        &self,
        lease: &Lease,
        now: Timestamp,
        ttl: Duration,
        handover: Option<&str>,
    ) -> Result<Option<Lease>, LeaseError> {
        let expires = later(now, ttl);
        let mut update = self.client.update_item().table_name(&self.table).key(KEY, s(&lease_key(&lease.policy)));
        update = match handover {
            Some(text) => update
                .update_expression("SET #e = :exp, #hv = :hv")
                .expression_attribute_names("#hv", HANDOVER)
                .expression_attribute_values(":hv", s(text)),
            None => update.update_expression("SET #e = :exp"),
        };
        let update = held_by(update, lease, now)
            .condition_expression("#h = :me AND #t = :tok AND #e > :now")
            .expression_attribute_values(":exp", n(ms(expires)));
        Ok(self.send_conditional(update).await?.then(|| Lease { expires, ..lease.clone() }))
    }

    /// Hands `lease` back at `now` (holder removed, token kept); `false` when it was no
    /// longer this holder's.
    pub async fn release(&self, lease: &Lease, now: Timestamp) -> Result<bool, LeaseError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&lease_key(&lease.policy)))
            .update_expression("SET #e = :now REMOVE #h")
            .condition_expression("#h = :me AND #t = :tok");
        self.send_conditional(held_by(update, lease, now)).await
    }

    /// Sends a conditional UpdateItem; `Ok(false)` when its condition failed.
    async fn send_conditional(&self, update: UpdateItemFluentBuilder) -> Result<bool, LeaseError> {
        match update.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(self.api_error("UpdateItem", &e)),
        }
    }
}
