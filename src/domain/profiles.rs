//! Users as other users see them (user + `userInfo`, never the password), and editing one's own
//! profile (`/userinfo`).

use std::collections::HashMap;

use serde::Serialize;

use crate::app::App;
use crate::store::models::{User, UserInfo};
use crate::store::{self, DbConn};

use super::{Actor, DomainError, rbac};

/// A user with their profile: the `user + userInfo` shape of API.md §4.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserWithInfo {
    #[serde(flatten)]
    pub user: User,
    pub user_info: Option<UserInfo>,
}

impl From<(User, Option<UserInfo>)> for UserWithInfo {
    fn from((user, user_info): (User, Option<UserInfo>)) -> Self {
        UserWithInfo { user, user_info }
    }
}

/// Users with their profiles by id, loaded in one query (lists must not query per row).
pub async fn load_people(
    conn: &mut DbConn,
    ids: &[i32],
) -> Result<HashMap<i32, UserWithInfo>, DomainError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    Ok(store::accounts::users_with_infos(conn, &ids)
        .await?
        .into_iter()
        .map(|row| (row.0.id, UserWithInfo::from(row)))
        .collect())
}

pub const NO_SUCH_USER: &str = "用户不存在";

/// The profile of user `user_id`.
pub async fn show_user_info(app: &App, user_id: i32) -> Result<UserInfo, DomainError> {
    let mut conn = app.db.get().await?;
    store::accounts::find_user_info(&mut conn, user_id)
        .await?
        .ok_or_else(|| DomainError::rejected(NO_SUCH_USER))
}

/// What `PUT /userinfo/:id` may change; an absent field keeps its value.
#[derive(Debug, Default)]
pub struct ProfileChange {
    pub nickname: Option<String>,
    pub photo: Option<String>,
    pub sign: Option<String>,
}

const NICKNAME_MAX: usize = 32;
const SIGN_MAX: usize = 100;
const PHOTO_MAX: usize = 512;

fn check_nickname(nickname: &str) -> Result<(), DomainError> {
    let len = nickname.trim().chars().count();
    if len == 0 || len > NICKNAME_MAX || nickname.chars().any(char::is_control) {
        return Err(DomainError::invalid(format!(
            "昵称应为1到{NICKNAME_MAX}个字符"
        )));
    }
    Ok(())
}

fn check_sign(sign: &str) -> Result<(), DomainError> {
    if sign.chars().count() > SIGN_MAX {
        return Err(DomainError::invalid(format!("签名最多{SIGN_MAX}个字符")));
    }
    Ok(())
}

/// A photo is one of our files (`/public/...`) or a web address: never `javascript:` or the like,
/// since clients put it in an `<img src>`.
fn check_photo(photo: &str) -> Result<(), DomainError> {
    let allowed = photo.starts_with("/public/")
        || photo.starts_with("https://")
        || photo.starts_with("http://");
    if !allowed
        || photo.len() > PHOTO_MAX
        || photo.contains("..")
        || photo.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(DomainError::invalid("头像地址不合法"));
    }
    Ok(())
}

/// Changes the profile `user_info_id`: only its owner, or a user with the `admin` right, may
/// (the original let anyone rewrite anyone's profile, its `userId` included).
pub async fn update_user_info(
    app: &App,
    actor: &Actor,
    user_info_id: i32,
    change: ProfileChange,
) -> Result<(), DomainError> {
    if let Some(nickname) = &change.nickname {
        check_nickname(nickname)?;
    }
    if let Some(sign) = &change.sign {
        check_sign(sign)?;
    }
    if let Some(photo) = &change.photo {
        check_photo(photo)?;
    }
    let mut conn = app.db.get().await?;
    let current = store::accounts::find_user_info_by_id(&mut conn, user_info_id)
        .await?
        .ok_or_else(|| DomainError::rejected(NO_SUCH_USER))?;
    if current.user_id != actor.user_id && rbac::require_admin(actor).is_err() {
        return Err(DomainError::NotPermitted);
    }
    let nickname = change
        .nickname
        .map(|n| n.trim().to_owned())
        .unwrap_or(current.nickname);
    let photo = change.photo.unwrap_or(current.photo);
    let sign = change.sign.or(current.sign);
    store::accounts::update_user_info(&mut conn, current.id, &nickname, &photo, sign.as_deref())
        .await?;
    Ok(())
}
