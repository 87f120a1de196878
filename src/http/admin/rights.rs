//! `/admin/rights`: list, create, update and delete the rights of the RBAC model.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::{IdBody, PageQuery, Params};
use crate::app::App;
use crate::domain::admin::{self, Listing, RightForm};
use crate::http::envelope::{ApiResult, ok};
use crate::http::extract::{Admin, Body};
use crate::store::models::Right;

pub fn router() -> Router<Arc<App>> {
    Router::new().route(
        "/rights",
        get(list_rights)
            .post(create_right)
            .put(update_right)
            .delete(delete_right),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RightBody {
    name: String,
    key_name: String,
    #[serde(default)]
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

#[derive(Deserialize)]
struct RightUpdate {
    id: i32,
    #[serde(flatten)]
    right: RightBody,
}

async fn list_rights(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Params(query): Params<PageQuery>,
) -> ApiResult<Listing<Right>> {
    ok(admin::list_rights(&app, &admin, &query.into()).await?)
}

async fn create_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RightBody>,
) -> ApiResult<Right> {
    ok(admin::create_right(&app, &admin, body.into()).await?)
}

async fn update_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<RightUpdate>,
) -> ApiResult<()> {
    admin::update_right(&app, &admin, body.id, body.right.into()).await?;
    ok(())
}

async fn delete_right(
    State(app): State<Arc<App>>,
    Admin(admin): Admin,
    Body(body): Body<IdBody>,
) -> ApiResult<()> {
    admin::delete_right(&app, &admin, body.id).await?;
    ok(())
}
