//! `/admin/rights`: list, create, update and delete the rights of the RBAC model.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{IdBody, PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, Listing, RightForm};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::http::openapi::{AdminReads, AdminWrites, Answer, Null};
use crate::store::models::Right;

pub fn router() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::default().routes(routes!(
        list_rights,
        create_right,
        update_right,
        delete_right
    ))
}

/// A right as an admin writes it: name and keyName 1 to 64 characters, desc at most 255.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct RightBody {
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(min_length = 1, max_length = 64)]
    key_name: String,
    #[serde(default)]
    #[schema(max_length = 255)]
    desc: String,
}

impl From<RightBody> for RightForm {
    fn from(body: RightBody) -> Self {
        RightForm {
            name: body.name,
            key_name: body.key_name,
            desc: body.desc,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RightUpdate {
    id: i32,
    #[serde(flatten)]
    right: RightBody,
}

/// A page of the rights.
#[utoipa::path(get, path = "/rights", tag = "admin", params(PageQuery),
    responses((status = 200, description = "`{count, rows}`; or a malformed paging or sorter",
               body = Answer<Listing<Right>>), AdminReads))]
async fn list_rights(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<Right>> {
    ok(admin::list_rights(&app, &admin, &query.into()).await?)
}

/// Creates a right.
#[utoipa::path(post, path = "/rights", tag = "admin", request_body = RightBody,
    responses((status = 200, description = "the right; or `已有此权限`, `参数校验失败`",
               body = Answer<Right>), AdminWrites))]
async fn create_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RightBody>,
) -> ApiResult<Right> {
    ok(admin::create_right(&app, &admin, body.into()).await?)
}

/// Changes a right; a built-in one keeps its keyName.
#[utoipa::path(put, path = "/rights", tag = "admin", request_body = RightUpdate,
    responses((status = 200, description = "`data` null; or `无此权限`, `已有此权限`, \
               `内置权限不能删除或修改关键字`, `参数校验失败`", body = Answer<Null>), AdminWrites))]
async fn update_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RightUpdate>,
) -> ApiResult<()> {
    admin::update_right(&app, &admin, body.id, body.right.into()).await?;
    ok(())
}

/// Deletes a right that is not built in.
#[utoipa::path(delete, path = "/rights", tag = "admin", request_body = IdBody,
    responses((status = 200, description = "`data` null; or `无此权限`, \
               `内置权限不能删除或修改关键字`", body = Answer<Null>), AdminWrites))]
async fn delete_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<IdBody>,
) -> ApiResult<()> {
    admin::delete_right(&app, &admin, body.id).await?;
    ok(())
}
