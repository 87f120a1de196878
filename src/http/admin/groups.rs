//! `/admin/groups`: the groups list, and disbanding or muting a group.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use serde::Deserialize;

use super::{PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, GroupFlag, Listing};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::store::models::Group;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/groups", get(list_groups))
        .route("/groups/disabled", put(update_group_disabled))
        .route("/groups/mute", put(update_group_mute))
}

#[derive(Deserialize)]
struct DisabledBody {
    id: i32,
    disabled: bool,
}

#[derive(Deserialize)]
struct MuteBody {
    id: i32,
    mute: bool,
}

async fn list_groups(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<Group>> {
    ok(admin::list_groups(&app, &admin, &query.into()).await?)
}

async fn update_group_disabled(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<DisabledBody>,
) -> ApiResult<()> {
    admin::set_group_flag(&app, &admin, body.id, GroupFlag::Disabled, body.disabled).await?;
    ok(())
}

async fn update_group_mute(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<MuteBody>,
) -> ApiResult<()> {
    admin::set_group_flag(&app, &admin, body.id, GroupFlag::Mute, body.mute).await?;
    ok(())
}
