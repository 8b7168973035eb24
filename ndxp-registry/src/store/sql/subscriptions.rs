//! Subscriptions of client subsystems to services, with their history.

use std::collections::HashMap;

use ndxp_core::{ServiceId, SubsystemId};
use serde_json::json;
use uuid::Uuid;

use super::rows::event_row;
use super::{
    col, corrupt, db, exists, parsed, row_by_key, ts, Run, SqlStore, SQL_SERVICE_EXISTS,
    SQL_SUBSYSTEM_EXISTS,
};
use crate::model::{Actor, Subscription, SubscriptionEvent, SubscriptionState};
use crate::store::{Result, StoreError, SubscriptionFilter};

pub(super) async fn load_subscription(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Subscription> {
    let row = row_by_key(
        &mut *conn,
        "SELECT id, service_id, client_id, state FROM subscriptions WHERE id = $1",
        id,
        "subscription",
    )
    .await?;
    let events = sqlx::query(
        "SELECT state, at, actor, note FROM subscription_events WHERE subscription_id = $1 \
         ORDER BY seq",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Subscription {
        id: parsed(&row, "id")?,
        service: parsed(&row, "service_id")?,
        client: parsed(&row, "client_id")?,
        state: parsed(&row, "state")?,
        history: events.iter().map(event_row).collect::<Result<_>>()?,
    })
}

/// Appends `event` to the history of subscription `id`, as its number `seq`.
async fn append_event(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
    seq: i64,
    event: &SubscriptionEvent,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO subscription_events (subscription_id, seq, state, at, actor, note) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(seq)
    .bind(event.state.as_str().to_string())
    .bind(ts(event.at))
    .bind(event.actor.clone())
    .bind(event.note.clone())
    .run(conn)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(super) async fn request_subscription(
        &self,
        service: &ServiceId,
        client: &SubsystemId,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription> {
        let mut w = self.begin_write(true).await?;
        if !exists(w.conn(), SQL_SERVICE_EXISTS, service).await? {
            return Err(StoreError::Invalid(format!(
                "service {service} does not exist"
            )));
        }
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, client).await? {
            return Err(StoreError::Invalid(format!(
                "client subsystem {client} does not exist"
            )));
        }
        let key = format!("{client} to {service}");
        let live = sqlx::query(
            "SELECT 1 FROM subscriptions WHERE service_id = $1 AND client_id = $2 \
             AND state IN ('requested', 'approved')",
        )
        .bind(service.to_string())
        .bind(client.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db)?;
        if live.is_some() {
            return Err(StoreError::AlreadyExists {
                what: "subscription",
                id: key,
            });
        }
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO subscriptions (id, service_id, client_id, state, created_at) \
             VALUES ($1, $2, $3, 'requested', $4)",
        )
        .bind(id.to_string())
        .bind(service.to_string())
        .bind(client.to_string())
        .bind(ts(w.at))
        .insert(w.conn(), "subscription", &key)
        .await?;
        let event = SubscriptionEvent {
            state: SubscriptionState::Requested,
            at: w.at,
            actor: actor.as_str().to_string(),
            note: note.map(str::to_string),
        };
        append_event(w.conn(), id, 0, &event).await?;
        let sub = Subscription {
            id,
            service: service.clone(),
            client: client.clone(),
            state: SubscriptionState::Requested,
            history: vec![event],
        };
        w.finish(
            actor,
            "subscription.request",
            &id.to_string(),
            json!({ "service": service, "client": client, "note": note }),
        )
        .await?;
        Ok(sub)
    }

    pub(super) async fn get_subscription(&self, id: Uuid) -> Result<Subscription> {
        let mut tx = self.read_tx().await?;
        let sub = load_subscription(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(sub)
    }

    pub(super) async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>> {
        const WHERE: &str = "($1 IS NULL OR s.service_id = $1) \
             AND ($2 IS NULL OR s.client_id = $2) \
             AND ($3 IS NULL OR s.service_id IN (SELECT id FROM services WHERE subsystem_id = $3)) \
             AND ($4 IS NULL OR s.state = $4)";
        let binds = [
            filter.service.as_ref().map(|s| s.to_string()),
            filter.client.as_ref().map(|s| s.to_string()),
            filter.provider.as_ref().map(|s| s.to_string()),
            filter.state.map(|s| s.as_str().to_string()),
        ];
        let mut tx = self.read_tx().await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, s.service_id, s.client_id, s.state FROM subscriptions s \
             WHERE {WHERE} ORDER BY s.created_at, s.id"
        )));
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db)?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.subscription_id, e.state, e.at, e.actor, e.note \
             FROM subscription_events e JOIN subscriptions s ON s.id = e.subscription_id \
             WHERE {WHERE} ORDER BY e.subscription_id, e.seq"
        )));
        for b in &binds {
            q = q.bind(b.clone());
        }
        let event_rows = q.fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut events: HashMap<String, Vec<SubscriptionEvent>> = HashMap::new();
        for row in &event_rows {
            let sid: String = col(row, "subscription_id")?;
            events.entry(sid).or_default().push(event_row(row)?);
        }
        rows.iter()
            .map(|row| {
                let sid: String = col(row, "id")?;
                Ok(Subscription {
                    id: parsed(row, "id")?,
                    service: parsed(row, "service_id")?,
                    client: parsed(row, "client_id")?,
                    state: parsed(row, "state")?,
                    history: events.remove(&sid).unwrap_or_default(),
                })
            })
            .collect()
    }

    pub(super) async fn transition_subscription(
        &self,
        id: Uuid,
        to: SubscriptionState,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription> {
        let mut w = self.begin_write(true).await?;
        let mut sub = load_subscription(w.conn(), id).await?;
        let from = sub.state;
        if !from.can_become(to) {
            return Err(StoreError::InvalidTransition {
                what: format!("subscription {id}"),
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        sqlx::query("UPDATE subscriptions SET state = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to.as_str().to_string())
            .run(w.conn())
            .await?;
        let seq = i64::try_from(sub.history.len())
            .map_err(|_| corrupt("subscription_events", "too many events"))?;
        let event = SubscriptionEvent {
            state: to,
            at: w.at,
            actor: actor.as_str().to_string(),
            note: note.map(str::to_string),
        };
        append_event(w.conn(), id, seq, &event).await?;
        sub.state = to;
        sub.history.push(event);
        w.finish(
            actor,
            &format!("subscription.{}", to.as_str()),
            &id.to_string(),
            json!({ "from": from, "to": to, "note": note,
                    "service": sub.service, "client": sub.client }),
        )
        .await?;
        Ok(sub)
    }
}
