//! The inbound group commit's fast path: a whole group in a fixed handful of multi-row
//! statements instead of about seven per message.
//!
//! Every statement is a round trip: to the single SQLite writer's thread in embedded mode, over
//! the network to Postgres in distributed mode. Per message, the row-at-a-time path
//! ([`super::ingress`]) checks the inbox, upserts the contact, finds or creates its open
//! conversation, inserts the inbox row, stamps the conversation and inserts the message. Here
//! each of those is one statement for the group, whatever its size, with the same results:
//! same rows, same message ids in the same order, same duplicates, same usage counters.
//!
//! Groups with a customer known by business-scoped user id (contact linking, rare) and the
//! isolation retry (a savepoint per item) keep the row-at-a-time path.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::ingress::{Accepted, InboundItem, InboundTarget, inbox_key};
use super::usage::{UsageBatch, UsageDays, UsageDelta};
use super::{StoreError, StoredMessage, bind_marks, dialect_of, rows, storable};

/// Rows per statement: the widest statement (messages) binds 9 parameters a row, well under
/// SQLite's 32,766 and Postgres's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

/// Whether [`accept_batched`] can take `items`: web chat messages (their conversation is known)
/// and provider customers known by address only.
pub(super) fn batchable(items: &[InboundItem]) -> bool {
    items.iter().all(|item| match &item.target {
        InboundTarget::Conversation(_) => true,
        InboundTarget::Contact(contact) => contact.user_id.is_none(),
    })
}

/// Stores `items` (visited in `order`, the lock order) inside `tx`, adding their counters to
/// `usage`; returns each item's outcome in input order.
pub(super) async fn accept_batched(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    order: &[usize],
    (days, usage): (&UsageDays, &mut UsageBatch),
) -> Result<Vec<Accepted>, StoreError> {
    let mut results = vec![Accepted::Duplicate; items.len()];
    let keys: Vec<String> = items.iter().map(inbox_key).collect();

    // A message repeated within the group is stored once, at its first place.
    let mut seen_in_group: HashSet<(&str, &str)> = HashSet::new();
    let mut fresh: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| seen_in_group.insert((&items[i].channel_account_id, &keys[i])))
        .collect();

    // Provider messages seen before are dropped before their contact is touched.
    let provider: Vec<usize> = fresh
        .iter()
        .copied()
        .filter(|&i| matches!(items[i].target, InboundTarget::Contact(_)))
        .collect();
    if !provider.is_empty() {
        let known = known_inbox_keys(tx, items, &keys, &provider).await?;
        fresh.retain(|&i| {
            !(matches!(items[i].target, InboundTarget::Contact(_))
                && known.contains(&(items[i].channel_account_id.clone(), keys[i].clone())))
        });
    }

    let mut conversations = resolve_conversations(tx, items, &fresh).await?;
    for &i in &fresh {
        if let InboundTarget::Conversation(id) = &items[i].target {
            conversations.insert(i, id.clone());
        }
    }

    let inbox_ids = insert_inbox(tx, items, &keys, &fresh, &conversations).await?;
    // What the inbox took (a concurrent writer may have stored the same message meanwhile).
    let stored: Vec<usize> = fresh
        .into_iter()
        .filter(|i| inbox_ids.contains_key(i))
        .collect();
    if stored.is_empty() {
        return Ok(results);
    }

    stamp_conversations(tx, items, &stored, &conversations, (days, usage)).await?;
    let message_ids = insert_messages(tx, items, &stored, &inbox_ids, &conversations).await?;

    for i in stored {
        let item = &items[i];
        results[i] = Accepted::New {
            conversation_id: conversations[&i].clone(),
            message: StoredMessage::customer(item, message_ids[&inbox_ids[&i]]),
        };
    }
    Ok(results)
}

/// The (channel account, inbox key) pairs among `which` the inbox already holds.
async fn known_inbox_keys(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    keys: &[String],
    which: &[usize],
) -> Result<HashSet<(String, String)>, StoreError> {
    let mut known = HashSet::new();
    for part in which.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                // A join, not a row-value `IN`: SQLite scans the whole table for the latter.
                "SELECT i.channel_account_id AS channel_account_id, i.external_id AS external_id \
             FROM (VALUES {}) AS v JOIN inbox i \
             ON i.channel_account_id = v.column1 AND i.external_id = v.column2",
                rows(part.len(), "(?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for &i in part {
            query = query.bind(&items[i].channel_account_id).bind(&keys[i]);
        }
        for row in query.fetch_all(&mut **tx).await? {
            known.insert((
                row.try_get("channel_account_id")?,
                row.try_get("external_id")?,
            ));
        }
    }
    Ok(known)
}

/// The open conversation of each provider item among `which` (by item index): contacts are
/// upserted (keeping the latest profile name), then their open conversations read, and the
/// missing ones created in `bot` state.
async fn resolve_conversations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    which: &[usize],
) -> Result<HashMap<usize, String>, StoreError> {
    // One row per customer (Postgres refuses to upsert a row twice in one statement); its
    // latest profile name wins, as it would message by message.
    let mut customers: Vec<(usize, Option<String>)> = Vec::new();
    let mut customer_of: HashMap<(&str, &str), usize> = HashMap::new();
    let mut item_customer: HashMap<usize, usize> = HashMap::new();
    for &i in which {
        let InboundTarget::Contact(contact) = &items[i].target else {
            continue;
        };
        let key = (
            items[i].channel_account_id.as_str(),
            contact.external_id.as_str(),
        );
        let slot = *customer_of.entry(key).or_insert_with(|| {
            customers.push((i, None));
            customers.len() - 1
        });
        if let Some(name) = &contact.display_name {
            customers[slot].1 = Some(storable(name).into_owned());
        }
        item_customer.insert(i, slot);
    }
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    // Contact row locks in one global order (account, address) across writers.
    let mut by_customer: Vec<usize> = (0..customers.len()).collect();
    by_customer.sort_by_key(|&slot| {
        let item = &items[customers[slot].0];
        let InboundTarget::Contact(contact) = &item.target else {
            unreachable!("customers are provider items")
        };
        (
            item.channel_account_id.as_str(),
            contact.external_id.as_str(),
        )
    });
    let upserts: Vec<&(usize, Option<String>)> =
        by_customer.iter().map(|&slot| &customers[slot]).collect();

    let mut contact_ids: HashMap<(String, String), String> = HashMap::new();
    for part in upserts.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "INSERT INTO contacts (id, tenant_id, channel_account_id, external_id, display_name, created_at) \
             VALUES {} ON CONFLICT (channel_account_id, external_id) \
             DO UPDATE SET display_name = COALESCE(excluded.display_name, contacts.display_name), unreachable = 0 \
             RETURNING id, channel_account_id, external_id",
                rows(part.len(), "(?, ?, ?, ?, ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for (first, name) in part.iter().copied() {
            let item = &items[*first];
            let InboundTarget::Contact(contact) = &item.target else {
                unreachable!("customers are provider items")
            };
            query = query
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&item.tenant_id)
                .bind(&item.channel_account_id)
                .bind(&contact.external_id)
                .bind(name.clone())
                .bind(item.received_at_ms);
        }
        for row in query.fetch_all(&mut **tx).await? {
            contact_ids.insert(
                (
                    row.try_get("channel_account_id")?,
                    row.try_get("external_id")?,
                ),
                row.try_get("id")?,
            );
        }
    }
    // (tenant, contact id) of each customer.
    let mut owners: Vec<(String, String)> = Vec::with_capacity(customers.len());
    for (first, _) in &customers {
        let item = &items[*first];
        let InboundTarget::Contact(contact) = &item.target else {
            unreachable!("customers are provider items")
        };
        let id = contact_ids
            .get(&(item.channel_account_id.clone(), contact.external_id.clone()))
            .ok_or_else(|| StoreError::Corrupt("a contact upsert returned no row".into()))?;
        owners.push((item.tenant_id.clone(), id.clone()));
    }

    // The newest open conversation of each contact.
    let mut open: HashMap<(String, String), (i64, String)> = HashMap::new();
    for part in owners.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "SELECT c.id AS id, c.tenant_id AS tenant_id, c.contact_id AS contact_id, \
             c.created_at AS created_at FROM (VALUES {}) AS v JOIN conversations c \
             ON c.tenant_id = v.column1 AND c.contact_id = v.column2 WHERE c.state <> 'closed'",
                rows(part.len(), "(?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for (tenant, contact) in part {
            query = query.bind(tenant).bind(contact);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let key = (row.try_get("tenant_id")?, row.try_get("contact_id")?);
            let candidate = (row.try_get::<i64, _>("created_at")?, row.try_get("id")?);
            match open.get(&key) {
                Some(best) if *best >= candidate => {}
                _ => {
                    open.insert(key, candidate);
                }
            }
        }
    }

    // Customers without one get a new conversation.
    let mut conversation_of_customer: Vec<String> = Vec::with_capacity(customers.len());
    let mut created: Vec<usize> = Vec::new();
    for (slot, owner) in owners.iter().enumerate() {
        match open.get(owner) {
            Some((_, id)) => conversation_of_customer.push(id.clone()),
            None => {
                conversation_of_customer.push(uuid::Uuid::now_v7().to_string());
                created.push(slot);
            }
        }
    }
    for part in created.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "INSERT INTO conversations (id, tenant_id, channel_account_id, contact_id, state, locale, created_at, updated_at) \
             VALUES {}",
                rows(part.len(), "(?, ?, ?, ?, 'bot', ?, ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for &slot in part {
            let item = &items[customers[slot].0];
            let InboundTarget::Contact(contact) = &item.target else {
                unreachable!("customers are provider items")
            };
            query = query
                .bind(&conversation_of_customer[slot])
                .bind(&item.tenant_id)
                .bind(&item.channel_account_id)
                .bind(&owners[slot].1)
                .bind(&contact.locale)
                .bind(item.received_at_ms)
                .bind(item.received_at_ms);
        }
        query.execute(&mut **tx).await?;
    }

    Ok(item_customer
        .into_iter()
        .map(|(i, slot)| (i, conversation_of_customer[slot].clone()))
        .collect())
}

/// Inserts the inbox rows of `which`; returns the inbox id of each item the inbox took.
async fn insert_inbox(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    keys: &[String],
    which: &[usize],
    conversations: &HashMap<usize, String>,
) -> Result<HashMap<usize, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(which.len());
    for part in which.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "INSERT INTO inbox (tenant_id, channel_account_id, external_id, conversation_id, kind, received_at, processed_at) \
             VALUES {} ON CONFLICT (channel_account_id, external_id) DO NOTHING \
             RETURNING id, channel_account_id, external_id",
                rows(part.len(), "(?, ?, ?, ?, ?, ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for &i in part {
            let item = &items[i];
            query = query
                .bind(&item.tenant_id)
                .bind(&item.channel_account_id)
                .bind(&keys[i])
                .bind(&conversations[&i])
                .bind(item.kind.as_str())
                .bind(item.received_at_ms)
                .bind((!item.answer).then_some(item.received_at_ms));
        }
        let mut by_key: HashMap<(String, String), i64> = HashMap::new();
        for row in query.fetch_all(&mut **tx).await? {
            by_key.insert(
                (
                    row.try_get("channel_account_id")?,
                    row.try_get("external_id")?,
                ),
                row.try_get("id")?,
            );
        }
        for &i in part {
            if let Some(id) = by_key.remove(&(items[i].channel_account_id.clone(), keys[i].clone()))
            {
                ids.insert(i, id);
            }
        }
    }
    Ok(ids)
}

/// Stamps each conversation with its new messages (last inbound time, count, first inbound
/// time) and counts the conversations whose first customer message is in this group.
async fn stamp_conversations(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    which: &[usize],
    conversations: &HashMap<usize, String>,
    (days, usage): (&UsageDays, &mut UsageBatch),
) -> Result<(), StoreError> {
    // Per conversation: its first and last new message (in order) and how many.
    let mut stamps: Vec<(&str, usize, usize, i64)> = Vec::new();
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    for &i in which {
        let id = conversations[&i].as_str();
        match slot_of.get(id) {
            Some(&slot) => {
                stamps[slot].2 = i;
                stamps[slot].3 += 1;
            }
            None => {
                slot_of.insert(id, stamps.len());
                stamps.push((id, i, i, 1));
            }
        }
    }
    let mut ids: Vec<&str> = stamps.iter().map(|(id, ..)| *id).collect();
    super::lock_conversations(tx, &mut ids).await?;
    let mut counts: HashMap<String, i64> = HashMap::with_capacity(stamps.len());
    for part in stamps.chunks(ROWS_PER_STATEMENT) {
        // column1 id, column2 tenant, column3 last received, column4 first received, column5 n
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "UPDATE conversations SET last_inbound_at = v.column3, updated_at = v.column3, \
             inbound_count = inbound_count + v.column5, \
             first_inbound_at = COALESCE(first_inbound_at, v.column4) \
             FROM (VALUES {}) AS v WHERE conversations.id = v.column1 AND conversations.tenant_id = v.column2 \
             RETURNING conversations.id AS id, conversations.inbound_count AS inbound_count",
                rows(part.len(), "(?, ?, ?, ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for (id, first, last, n) in part {
            query = query
                .bind(*id)
                .bind(&items[*first].tenant_id)
                .bind(items[*last].received_at_ms)
                .bind(items[*first].received_at_ms)
                .bind(*n);
        }
        for row in query.fetch_all(&mut **tx).await? {
            counts.insert(row.try_get("id")?, row.try_get("inbound_count")?);
        }
    }
    // A conversation counts on the day of its first customer message.
    let mut first_of_conversation: HashSet<usize> = HashSet::new();
    for (id, first, _, n) in &stamps {
        if counts.get(*id).is_some_and(|count| count - n == 0) {
            first_of_conversation.insert(*first);
        }
    }
    for &i in which {
        let item = &items[i];
        usage.add(
            &item.tenant_id,
            days.day(&item.tenant_id, item.received_at_ms),
            item.channel_kind.as_str(),
            &UsageDelta {
                messages_in: 1,
                conversations: i64::from(first_of_conversation.contains(&i)),
                ..UsageDelta::default()
            },
        );
    }
    Ok(())
}

/// Inserts the customer messages of `which`, in order; returns message ids by inbox id.
async fn insert_messages(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    items: &[InboundItem],
    which: &[usize],
    inbox_ids: &HashMap<usize, i64>,
    conversations: &HashMap<usize, String>,
) -> Result<HashMap<i64, i64>, StoreError> {
    let mut ids = HashMap::with_capacity(which.len());
    for part in which.chunks(ROWS_PER_STATEMENT) {
        let sql = bind_marks(
            dialect_of(tx),
            &format!(
                "INSERT INTO messages (tenant_id, conversation_id, author, body, external_id, inbox_id, content_kind, media, created_at, trace_id) \
             VALUES {} RETURNING id, inbox_id",
                rows(part.len(), "(?, ?, 'customer', ?, ?, ?, ?, ?, ?, ?)")
            ),
        );
        let mut query = sqlx::query(&sql);
        for &i in part {
            let item = &items[i];
            query = query
                .bind(&item.tenant_id)
                .bind(&conversations[&i])
                .bind(storable(&item.text).into_owned())
                .bind(storable(&item.external_id).into_owned())
                .bind(inbox_ids[&i])
                .bind(item.content_kind)
                .bind(item.media.as_deref().map(|m| storable(m).into_owned()))
                .bind(item.received_at_ms)
                .bind(item.trace_id.as_deref());
        }
        for row in query.fetch_all(&mut **tx).await? {
            ids.insert(row.try_get("inbox_id")?, row.try_get("id")?);
        }
    }
    Ok(ids)
}
