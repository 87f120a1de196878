//! What the domain announces to the transports: changes they must act on at once, such as a
//! user's sockets to drop after a ban. REST changes publish; the realtime layer subscribes.

/// A change other parts of the server react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// A user's roles or rights changed, or the user was banned or deleted: their sessions were
    /// revoked if they lost the `login` right, and their sockets must re-check or be dropped.
    AccessChanged { user_id: i32 },
    /// A user logged out: the sockets opened with that session must go with it.
    SessionEnded { user_id: i32, session_id: String },
    /// A group was disabled, enabled, muted or unmuted.
    GroupChanged { group_id: i32 },
}

/// The channel of domain events within one process.
pub type Events = tokio::sync::broadcast::Sender<DomainEvent>;

/// A channel with room for bursts; a subscriber that falls further behind is told it lagged.
pub fn channel() -> Events {
    tokio::sync::broadcast::channel(1024).0
}
