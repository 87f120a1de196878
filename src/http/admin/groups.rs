//! `/admin/groups`: the groups list, and disbanding or muting a group.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, GroupFlag, Listing};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::http::openapi::{AdminReads, AdminWrites, Answer, Null};
use crate::store::models::Group;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default()
        .routes(routes!(list_groups))
        .routes(routes!(update_group_disabled))
        .routes(routes!(update_group_mute))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct DisabledBody {
    id: i32,
    disabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MuteBody {
    id: i32,
    mute: bool,
}

/// A page of all groups.
#[utoipa::path(get, path = "/groups", tag = "admin", params(PageQuery),
    responses((status = 200, description = "`{count, rows}`; or a malformed paging or sorter",
               body = Answer<Listing<Group>>), AdminReads))]
async fn list_groups(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<Group>> {
    ok(admin::list_groups(&app, &admin, &query.into()).await?)
}

/// Disbands (or restores) a group.
#[utoipa::path(put, path = "/groups/disabled", tag = "admin", request_body = DisabledBody,
    responses((status = 200, description = "`data` null; or `群组不存在`", body = Answer<Null>),
              AdminWrites))]
async fn update_group_disabled(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<DisabledBody>,
) -> ApiResult<()> {
    admin::set_group_flag(&app, &admin, body.id, GroupFlag::Disabled, body.disabled).await?;
    ok(())
}

/// Stops (or allows) posting in a group.
#[utoipa::path(put, path = "/groups/mute", tag = "admin", request_body = MuteBody,
    responses((status = 200, description = "`data` null; or `群组不存在`", body = Answer<Null>),
              AdminWrites))]
async fn update_group_mute(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<MuteBody>,
) -> ApiResult<()> {
    admin::set_group_flag(&app, &admin, body.id, GroupFlag::Mute, body.mute).await?;
    ok(())
}
