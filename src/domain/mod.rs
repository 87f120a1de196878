//! What the system does, once for every transport: who may do what, what is valid, what is
//! stored. REST handlers and Socket.IO handlers call these functions and only render the result.

pub mod accounts;
pub mod admin;
pub mod applies;
pub mod conversations;
mod error;
pub mod events;
pub mod friendship;
pub mod github;
pub mod groups;
pub mod import;
pub mod limits;
pub mod message_writer;
pub mod messaging;
pub mod names;
pub mod presence;
pub mod profiles;
pub mod rbac;
pub mod robot;
pub mod search;
pub mod seed;
pub mod uploads;
pub mod users;

pub use error::DomainError;

/// The user on whose behalf a request or event acts, as established from their session.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: i32,
    pub session_id: String,
    /// `keyName`s of the rights the user holds, as [`rbac::RightsCache`] knows them: changed on
    /// this process, at once; on another, within [`rbac::RIGHTS_TTL`].
    pub rights: std::sync::Arc<[String]>,
}

impl Actor {
    pub fn has_right(&self, key: &str) -> bool {
        self.rights.iter().any(|right| right == key)
    }
}
