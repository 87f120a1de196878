//! `/admin/roles`: list roles with their rights, create, update and delete them.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, Listing, RoleForm, RoleWithRights};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::http::openapi::{AdminReads, AdminWrites, Answer, Null};
use crate::store::models::Role;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(list_roles, create_role, update_role, delete_roles))
}

/// A role as an admin writes it; `rightIds` replace its rights, absent on `PUT` keeps them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(min_length = 1, max_length = 64)]
    key_name: String,
    #[serde(default)]
    #[schema(max_length = 255)]
    desc: String,
    right_ids: Option<Vec<i32>>,
}

impl From<RoleBody> for RoleForm {
    fn from(body: RoleBody) -> Self {
        RoleForm {
            name: body.name,
            key_name: body.key_name,
            desc: body.desc,
            right_ids: body.right_ids,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RoleUpdate {
    id: i32,
    #[serde(flatten)]
    role: RoleBody,
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RoleIds {
    ids: Vec<i32>,
}

/// A page of the roles, each with its rights.
#[utoipa::path(get, path = "/roles", tag = "admin", params(PageQuery),
    responses((status = 200, description = "`{count, rows}`; or a malformed paging or sorter",
               body = Answer<Listing<RoleWithRights>>), AdminReads))]
async fn list_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<RoleWithRights>> {
    ok(admin::list_roles(&app, &admin, &query.into()).await?)
}

/// Creates a role.
#[utoipa::path(post, path = "/roles", tag = "admin", request_body = RoleBody,
    responses((status = 200, description = "the role; or `已有此角色名称或者关键字`, `权限不存在`, \
               `参数校验失败`", body = Answer<Role>), AdminWrites))]
async fn create_role(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleBody>,
) -> ApiResult<Role> {
    ok(admin::create_role(&app, &admin, body.into()).await?)
}

/// Changes a role; a built-in one keeps its keyName, `admin` keeps its `admin` and `login` rights.
#[utoipa::path(put, path = "/roles", tag = "admin", request_body = RoleUpdate,
    responses((status = 200, description = "`data` null; or a refusal of docs/protocol.md §4.5",
               body = Answer<Null>), AdminWrites))]
async fn update_role(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleUpdate>,
) -> ApiResult<()> {
    admin::update_role(&app, &admin, body.id, body.role.into()).await?;
    ok(())
}

/// Deletes roles that are not built in; unknown ids are skipped.
#[utoipa::path(delete, path = "/roles", tag = "admin", request_body = RoleIds,
    responses((status = 200, description = "`data` null; or `内置角色不能删除或修改关键字`",
               body = Answer<Null>), AdminWrites))]
async fn delete_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleIds>,
) -> ApiResult<()> {
    admin::delete_roles(&app, &admin, body.ids).await?;
    ok(())
}
