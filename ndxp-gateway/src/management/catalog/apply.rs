//! One [`Change`] made on the store of the apply's transaction.

use ndxp_registry::model::{Actor, ServiceUpdate, SubscriptionState};
use ndxp_registry::store::gateway::{GatewayServiceState, GatewayStore, SubscriptionLimits};
use ndxp_registry::store::{RegistryStore, SqlStore};

use super::plan::{Change, Step};
use crate::management::registry::{Admin, AdminError};

/// Makes `change` through `admin` (members, subsystems: the instance and
/// name checks of the commands) or the store's checked writes.
pub(super) async fn run(
    store: &SqlStore,
    admin: &Admin,
    change: &Change,
    actor: &Actor,
) -> Result<(), AdminError> {
    match &change.step {
        Step::AddMember(id, name) => drop(admin.add_member(id, name).await?),
        Step::RenameMember(id, name) => drop(admin.rename_member(id, name).await?),
        Step::RemoveMember(id) => admin.remove_member(id).await?,
        Step::AddSubsystem(id) => drop(admin.add_subsystem(id).await?),
        Step::RemoveSubsystem(id) => admin.remove_subsystem(id).await?,
        Step::AddGroup(code, description, members) => {
            store.add_group(code, description, actor).await?;
            for s in members {
                store.add_group_member(code, s, actor).await?;
            }
        }
        Step::DescribeGroup(code, description) => {
            store.describe_group(code, description, actor).await?;
        }
        Step::RemoveGroup(code) => store.remove_group(code, actor).await?,
        Step::GroupMembers { code, add, remove } => {
            for s in remove {
                store.remove_group_member(code, s, actor).await?;
            }
            for s in add {
                store.add_group_member(code, s, actor).await?;
            }
        }
        Step::AddService(s) => {
            let id = s.id.get_ref();
            store
                .add_service(id, &s.description, s.openapi.as_deref(), actor)
                .await?;
            if s.deprecated_at.is_some() || s.sunset_at.is_some() {
                let update = ServiceUpdate {
                    deprecated_at: Some(s.deprecated_at),
                    sunset_at: Some(s.sunset_at),
                    ..ServiceUpdate::default()
                };
                store.update_service(id, &update, actor).await?;
            }
        }
        Step::UpdateService(id, update) => drop(store.update_service(id, update, actor).await?),
        Step::RemoveService(id) => store.remove_service(id, actor).await?,
        Step::Grant(service, grantee) => drop(store.grant_access(service, grantee, actor).await?),
        Step::Revoke(service, grantee) => store.revoke_access(service, grantee, actor).await?,
        Step::AddGatewayService(g) => {
            let id = g.service.get_ref();
            store
                .register_gateway_service(id, None, None, &g.settings(), actor)
                .await?;
            if g.state != GatewayServiceState::Registered {
                store.set_gateway_service_state(id, g.state, actor).await?;
            }
        }
        Step::UpdateGatewayService { id, update, state } => {
            if let Some(update) = update {
                store.update_gateway_service(id, update, actor).await?;
            }
            if let Some(state) = state {
                store.set_gateway_service_state(id, *state, actor).await?;
            }
        }
        Step::Subscribe(s) => {
            let sub = store
                .request_subscription(s.service.get_ref(), &s.client, None, actor)
                .await?;
            if s.state == super::WantedSubscription::Approved {
                store
                    .transition_subscription(sub.id, SubscriptionState::Approved, None, actor)
                    .await?;
            }
            if s.limits() != SubscriptionLimits::default() {
                store
                    .set_subscription_limits(sub.id, &s.limits(), actor)
                    .await?;
            }
        }
        Step::UpdateSubscription {
            id,
            approve,
            limits,
        } => {
            if *approve {
                store
                    .transition_subscription(*id, SubscriptionState::Approved, None, actor)
                    .await?;
            }
            if let Some(s) = limits {
                store
                    .set_subscription_limits(*id, &s.limits(), actor)
                    .await?;
            }
        }
        Step::Cancel(id) => drop(
            store
                .transition_subscription(
                    *id,
                    SubscriptionState::Cancelled,
                    Some("removed by `registry apply --prune`"),
                    actor,
                )
                .await?,
        ),
    }
    Ok(())
}
