//! The one portable diesel schema, shared by the SQLite and PostgreSQL migrations.
//!
//! Only types both backends map the same way are used: Integer, BigInt, Text, Bool, Timestamp.

diesel::table! {
    users (id) {
        id -> Integer,
        provider -> Text,
        username -> Text,
        password -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        /// The username NFKC-normalised and lower-cased (`domain::names::username_key`): unique.
        username_key -> Nullable<Text>,
    }
}

diesel::table! {
    user_infos (id) {
        id -> Integer,
        user_id -> Integer,
        nickname -> Text,
        photo -> Text,
        sign -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    github_identities (id) {
        id -> Integer,
        github_id -> BigInt,
        user_id -> Integer,
        login -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    roles (id) {
        id -> Integer,
        name -> Text,
        key_name -> Text,
        description -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    rights (id) {
        id -> Integer,
        name -> Text,
        key_name -> Text,
        description -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    role_rights (role_id, right_id) {
        role_id -> Integer,
        right_id -> Integer,
    }
}

diesel::table! {
    user_roles (user_id, role_id) {
        user_id -> Integer,
        role_id -> Integer,
    }
}

diesel::table! {
    conversations (id) {
        id -> Integer,
        #[sql_name = "type"]
        kind -> Text,
        active_time -> Timestamp,
        active -> Bool,
        last_seq -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    groups (id) {
        id -> Integer,
        name -> Text,
        photo -> Text,
        introduction -> Nullable<Text>,
        disabled -> Bool,
        mute -> Bool,
        owner_id -> Integer,
        conversation_id -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    user_groups (group_id, user_id) {
        user_id -> Integer,
        group_id -> Integer,
        created_at -> Timestamp,
    }
}

diesel::table! {
    friends (id) {
        id -> Integer,
        user_id -> Integer,
        friend_id -> Integer,
        conversation_id -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> Integer,
        conversation_id -> Integer,
        seq -> BigInt,
        from_id -> Integer,
        to_id -> Integer,
        body -> Text,
        client_msg_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    applies (id) {
        id -> Integer,
        #[sql_name = "type"]
        kind -> Text,
        from_id -> Integer,
        to_id -> Integer,
        user_id -> Integer,
        has_handled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    uploads (id) {
        id -> Integer,
        user_id -> Integer,
        url -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    readiness (id) {
        id -> Integer,
        checks -> BigInt,
    }
}

diesel::joinable!(user_infos -> users (user_id));
diesel::joinable!(uploads -> users (user_id));
diesel::joinable!(github_identities -> users (user_id));
diesel::joinable!(role_rights -> roles (role_id));
diesel::joinable!(role_rights -> rights (right_id));
diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(user_roles -> roles (role_id));
diesel::joinable!(groups -> conversations (conversation_id));
diesel::joinable!(user_groups -> groups (group_id));
diesel::joinable!(user_groups -> users (user_id));
diesel::joinable!(friends -> conversations (conversation_id));
diesel::joinable!(messages -> conversations (conversation_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    user_infos,
    github_identities,
    roles,
    rights,
    role_rights,
    user_roles,
    conversations,
    groups,
    user_groups,
    friends,
    messages,
    applies,
    uploads,
);
