//! `/admin/roles`: list roles with their rights, create, update and delete them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::{PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, Listing, RoleForm, RoleWithRights};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::store::models::Role;

pub fn router() -> Router<Arc<App>> {
    Router::new().route(
        "/roles",
        get(list_roles)
            .post(create_role)
            .put(update_role)
            .delete(delete_roles),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    name: String,
    key_name: String,
    #[serde(default)]
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

#[derive(Deserialize)]
struct RoleUpdate {
    id: i32,
    #[serde(flatten)]
    role: RoleBody,
}

#[derive(Deserialize)]
struct RoleIds {
    ids: Vec<i32>,
}

async fn list_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<RoleWithRights>> {
    ok(admin::list_roles(&app, &admin, &query.into()).await?)
}

async fn create_role(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleBody>,
) -> ApiResult<Role> {
    ok(admin::create_role(&app, &admin, body.into()).await?)
}

async fn update_role(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleUpdate>,
) -> ApiResult<()> {
    admin::update_role(&app, &admin, body.id, body.role.into()).await?;
    ok(())
}

async fn delete_roles(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RoleIds>,
) -> ApiResult<()> {
    admin::delete_roles(&app, &admin, body.ids).await?;
    ok(())
}
