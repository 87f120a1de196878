//! Groups as their members see them: the user's groups, one group, and answering an apply to join
//! one. A group has its own `groupchat` conversation; joining the group is joining it.

use crate::app::App;
use crate::store;
use crate::store::models::Group;

use super::applies::{self, APPLY_KIND_GROUP, NO_SUCH_GROUP};
use super::conversations::GROUP_DISABLED;
use super::{Actor, DomainError};

/// The groups the user is a member of, oldest first; disbanded groups are hidden.
pub async fn list_groups(app: &App, actor: &Actor) -> Result<Vec<Group>, DomainError> {
    let mut conn = app.db.get().await?;
    Ok(store::groups::open_groups_of_user(&mut conn, actor.user_id).await?)
}

/// One group, as shown before applying to it; a disbanded group is refused.
pub async fn show_group(app: &App, group_id: i32) -> Result<Group, DomainError> {
    let mut conn = app.db.get().await?;
    let group = store::groups::find_group(&mut conn, group_id)
        .await?
        .ok_or_else(|| DomainError::rejected(NO_SUCH_GROUP))?;
    if group.disabled {
        return Err(DomainError::rejected(GROUP_DISABLED));
    }
    Ok(group)
}

/// Answers an apply to join a group: only the group's owner may. On approval the applicant
/// joins; the apply is handled either way, in the same transaction. Answers the group.
pub async fn answer_group_apply(
    app: &App,
    actor: &Actor,
    apply_id: i32,
    approval: bool,
) -> Result<Group, DomainError> {
    let user_id = actor.user_id;
    let mut conn = app.db.get().await?;
    conn.transaction(move |tx| {
        Box::pin(async move {
            let apply = applies::find_apply(tx, apply_id, APPLY_KIND_GROUP).await?;
            let group = store::groups::find_group(tx, apply.to_id)
                .await?
                .ok_or_else(|| DomainError::rejected(NO_SUCH_GROUP))?;
            if group.owner_id != user_id {
                return Err(DomainError::NotPermitted);
            }
            if approval && group.disabled {
                return Err(DomainError::rejected(GROUP_DISABLED));
            }
            applies::mark_handled(tx, &apply).await?;
            if approval {
                store::groups::add_member(tx, group.id, apply.from_id).await?;
            }
            Ok(group)
        })
    })
    .await
}
