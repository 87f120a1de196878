//! The admin REST routes (docs/protocol.md §4.4–§4.5) and the chat-user management routes of
//! README.md, through real HTTP on SQLite and on PostgreSQL: the admin right on every route,
//! paging and sorting as the admin front end sends them, whole list shapes, and bans and role
//! changes that act on the very next request.

mod common;

use common::{Backend, Client, TestServer, assert_no_password, assert_refused, data, mask_times};
use im_server::domain::events::DomainEvent;
use im_server::store;
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    admin_routes_refuse_non_admins_and_strangers,
    rights_list_create_update_delete,
    roles_list_create_update_delete,
    role_edit_acts_on_its_holders_at_once,
    paging_defaults_and_clamping,
    sorter_variants,
    users_list_shape_and_filters,
    groups_list_disable_and_mute,
    ban_ends_sessions_at_once_and_blocks_login,
    mute_and_role_changes_act_at_once,
    user_role_refusals,
    chat_user_create_and_edit,
    chat_user_delete_removes_what_belongs_to_them,
    unknown_admin_route_is_not_found,
    nul_in_a_query_is_refused,
);

/// Sends a request and returns the HTTP status with the JSON answer.
async fn send(client: &Client, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = client
        .http
        .request(method, format!("{}{path}", client.base));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

/// Every admin route with a body that would succeed for an admin.
fn admin_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/admin/rights?sorter=", None),
        (
            Method::POST,
            "/api/v1/admin/rights",
            Some(json!({"name": "x", "keyName": "x", "desc": "x"})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/rights",
            Some(json!({"id": 5, "name": "x", "keyName": "test", "desc": "x"})),
        ),
        (
            Method::DELETE,
            "/api/v1/admin/rights",
            Some(json!({"id": 6})),
        ),
        (Method::GET, "/api/v1/admin/roles", None),
        (
            Method::POST,
            "/api/v1/admin/roles",
            Some(json!({"name": "x", "keyName": "x", "desc": "x", "rightIds": [1]})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/roles",
            Some(
                json!({"id": 2, "name": "用户", "keyName": "user", "desc": "x", "rightIds": [1, 2, 3]}),
            ),
        ),
        (
            Method::DELETE,
            "/api/v1/admin/roles",
            Some(json!({"ids": [5]})),
        ),
        (Method::GET, "/api/v1/admin/groups?sorter={}", None),
        (
            Method::PUT,
            "/api/v1/admin/groups/disabled",
            Some(json!({"id": 1, "disabled": true})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/groups/mute",
            Some(json!({"id": 1, "mute": true})),
        ),
        (Method::GET, "/api/v1/admin/users", None),
        (
            Method::PUT,
            "/api/v1/admin/users/roles",
            Some(json!({"id": 2, "roleIds": [1]})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/users/disabled",
            Some(json!({"id": 5, "disabled": true})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/users/mute",
            Some(json!({"id": 5, "mute": true})),
        ),
        (
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"username": "newbie", "password": "123456"})),
        ),
        (
            Method::PUT,
            "/api/v1/admin/users",
            Some(json!({"id": 5, "nickname": "x"})),
        ),
        (
            Method::DELETE,
            "/api/v1/admin/users",
            Some(json!({"id": 5})),
        ),
    ]
}

async fn admin_routes_refuse_non_admins_and_strangers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let user = server.logged_in("user").await;
    let stranger = server.client();
    let mut conn = server.app.db.get().await.unwrap();
    let before = store::stats::table_counts(&mut conn).await.unwrap();
    for (method, path, body) in admin_routes() {
        let (status, reply) = send(&user, method.clone(), path, body.as_ref()).await;
        assert_eq!(status, 403, "{method} {path} as user");
        assert_refused(&reply, "1", "无此权限");
        let (status, reply) = send(&stranger, method.clone(), path, body.as_ref()).await;
        assert_eq!(status, 200, "{method} {path} as stranger");
        assert_refused(&reply, "1", "请登录");
    }
    assert_eq!(
        store::stats::table_counts(&mut conn).await.unwrap(),
        before,
        "refused requests changed nothing"
    );
    // Nothing above touched the user's own rights either.
    let me = data(&user.get("/api/v1/currentUser").await).clone();
    assert_eq!(me["roles"][0]["keyName"], "user");
    // The same routes succeed for the admin.
    let admin = server.logged_in("admin").await;
    for (method, path, body) in admin_routes() {
        let (status, reply) = send(&admin, method.clone(), path, body.as_ref()).await;
        assert_eq!(status, 200, "{method} {path} as admin: {reply}");
        data(&reply);
        assert_no_password(&reply);
    }
}

async fn rights_list_create_update_delete(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let right = |id: i64, name: &str, key: &str, desc: &str| {
        json!({"id": id, "name": name, "keyName": key, "desc": desc,
               "createdAt": "<time>", "updatedAt": "<time>"})
    };
    assert_eq!(
        mask_times(
            &admin
                .get("/api/v1/admin/rights?pageSize=10&pageNumber=1&sorter=")
                .await
        ),
        json!({"statusCode": "0", "errorMessage": null, "data": {"count": 5, "rows": [
            right(1, "管理", "admin", "使用管理后台"),
            right(2, "登录", "login", "登录系统"),
            right(3, "发言", "speak", "发送消息"),
            right(4, "配置", "conf", "修改配置"),
            right(5, "测试", "test", "测试新功能"),
        ]}})
    );

    let created = admin
        .post(
            "/api/v1/admin/rights",
            &json!({"name": "上传", "keyName": "upload", "desc": "上传文件"}),
        )
        .await;
    assert_eq!(
        mask_times(&created),
        json!({"statusCode": "0", "errorMessage": null,
               "data": right(6, "上传", "upload", "上传文件")})
    );
    assert_refused(
        &admin
            .post(
                "/api/v1/admin/rights",
                &json!({"name": "另一个", "keyName": "upload", "desc": ""}),
            )
            .await,
        "1",
        "已有此权限",
    );
    for bad in [
        json!({"name": "x"}),
        json!({"name": "", "keyName": "k", "desc": ""}),
        json!({"name": 1, "keyName": "k", "desc": ""}),
    ] {
        assert_refused(
            &admin.post("/api/v1/admin/rights", &bad).await,
            "1",
            "参数校验失败",
        );
    }

    assert_eq!(
        admin
            .put(
                "/api/v1/admin/rights",
                &json!({"id": 6, "name": "上传文件", "keyName": "file", "desc": "可上传"}),
            )
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/rights",
                &json!({"id": 999, "name": "x", "keyName": "y", "desc": ""}),
            )
            .await,
        "1",
        "无此权限",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/rights",
                &json!({"id": 6, "name": "x", "keyName": "speak", "desc": ""}),
            )
            .await,
        "1",
        "已有此权限",
    );
    // The server's checks find rights by key: a built-in key cannot be renamed or removed.
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/rights",
                &json!({"id": 2, "name": "登录", "keyName": "signin", "desc": ""}),
            )
            .await,
        "1",
        "内置权限不能删除或修改关键字",
    );
    assert_refused(
        &admin
            .delete("/api/v1/admin/rights", &json!({"id": 2}))
            .await,
        "1",
        "内置权限不能删除或修改关键字",
    );

    let list = admin
        .get("/api/v1/admin/rights?pageSize=1&pageNumber=6")
        .await;
    assert_eq!(
        mask_times(data(&list)),
        json!({"count": 6, "rows": [right(6, "上传文件", "file", "可上传")]})
    );
    assert_eq!(
        admin
            .delete("/api/v1/admin/rights", &json!({"id": 6}))
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_refused(
        &admin
            .delete("/api/v1/admin/rights", &json!({"id": 6}))
            .await,
        "1",
        "无此权限",
    );
    assert_refused(
        &admin.delete("/api/v1/admin/rights", &json!({})).await,
        "1",
        "参数校验失败",
    );
    assert_eq!(data(&admin.get("/api/v1/admin/rights").await)["count"], 5);
}

fn role_json(id: i64, name: &str, key: &str, desc: &str) -> Value {
    json!({"id": id, "name": name, "keyName": key, "desc": desc,
           "createdAt": "<time>", "updatedAt": "<time>"})
}

fn right_json(id: i64) -> Value {
    let (name, key, desc) = match id {
        1 => ("管理", "admin", "使用管理后台"),
        2 => ("登录", "login", "登录系统"),
        3 => ("发言", "speak", "发送消息"),
        4 => ("配置", "conf", "修改配置"),
        _ => ("测试", "test", "测试新功能"),
    };
    json!({"id": id, "name": name, "keyName": key, "desc": desc,
           "createdAt": "<time>", "updatedAt": "<time>"})
}

fn with_rights(mut role: Value, rights: &[i64]) -> Value {
    role["rights"] = rights.iter().map(|id| right_json(*id)).collect();
    role
}

async fn roles_list_create_update_delete(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    assert_eq!(
        mask_times(&admin.get("/api/v1/admin/roles?sorter=").await),
        json!({"statusCode": "0", "errorMessage": null, "data": {"count": 4, "rows": [
            with_rights(role_json(1, "管理员", "admin", "管理员"), &[1, 2]),
            with_rights(role_json(2, "用户", "user", "普通用户"), &[2, 3]),
            with_rights(role_json(3, "封禁", "disabled", "封禁的用户"), &[]),
            with_rights(role_json(4, "禁言", "mute", "禁言的用户"), &[2]),
        ]}})
    );

    let created = admin
        .post(
            "/api/v1/admin/roles",
            &json!({"name": "测试员", "keyName": "tester", "desc": "测试", "rightIds": [5, 2, 5]}),
        )
        .await;
    assert_eq!(
        mask_times(&created),
        json!({"statusCode": "0", "errorMessage": null,
               "data": role_json(5, "测试员", "tester", "测试")})
    );
    for duplicate in [
        json!({"name": "测试员", "keyName": "other", "desc": "", "rightIds": []}),
        json!({"name": "其他", "keyName": "tester", "desc": "", "rightIds": []}),
    ] {
        assert_refused(
            &admin.post("/api/v1/admin/roles", &duplicate).await,
            "1",
            "已有此角色名称或者关键字",
        );
    }
    assert_refused(
        &admin
            .post(
                "/api/v1/admin/roles",
                &json!({"name": "新", "keyName": "new", "desc": "", "rightIds": [99]}),
            )
            .await,
        "1",
        "权限不存在",
    );
    assert_refused(
        &admin
            .post(
                "/api/v1/admin/roles",
                &json!({"name": "新", "rightIds": "1"}),
            )
            .await,
        "1",
        "参数校验失败",
    );

    assert_eq!(
        admin
            .put(
                "/api/v1/admin/roles",
                &json!({"id": 5, "name": "测试者", "keyName": "tester", "desc": "改", "rightIds": [3]}),
            )
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/roles",
                &json!({"id": 5, "name": "用户", "keyName": "tester", "desc": "", "rightIds": []}),
            )
            .await,
        "1",
        "已有此角色名称或者关键字",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/roles",
                &json!({"id": 99, "name": "x", "keyName": "y", "desc": "", "rightIds": []}),
            )
            .await,
        "1",
        "角色不存在",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/roles",
                &json!({"id": 3, "name": "封禁", "keyName": "banned", "desc": "", "rightIds": []}),
            )
            .await,
        "1",
        "内置角色不能删除或修改关键字",
    );
    // The back office cannot be locked: the admin role keeps `admin` and `login`.
    for rights in [json!([2]), json!([1]), json!([])] {
        assert_refused(
            &admin
                .put(
                    "/api/v1/admin/roles",
                    &json!({"id": 1, "name": "管理员", "keyName": "admin", "desc": "管理员", "rightIds": rights}),
                )
                .await,
            "1",
            "管理员角色必须保留管理和登录权限",
        );
    }
    data(&admin.get("/api/v1/admin/rights").await);
    let page = admin
        .get("/api/v1/admin/roles?pageSize=2&pageNumber=3")
        .await;
    assert_eq!(
        mask_times(data(&page)),
        json!({"count": 5, "rows": [with_rights(role_json(5, "测试者", "tester", "改"), &[3])]})
    );

    assert_refused(
        &admin
            .delete("/api/v1/admin/roles", &json!({"ids": [4, 5]}))
            .await,
        "1",
        "内置角色不能删除或修改关键字",
    );
    assert_eq!(
        admin
            .delete("/api/v1/admin/roles", &json!({"ids": [5]}))
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_eq!(data(&admin.get("/api/v1/admin/roles").await)["count"], 4);
    assert_refused(
        &admin.delete("/api/v1/admin/roles", &json!({"id": 5})).await,
        "1",
        "参数校验失败",
    );
}

async fn role_edit_acts_on_its_holders_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let member = server.logged_in("member5").await;
    let mut events = server.app.events.subscribe();
    // Role `user` loses `login`: every holder is logged out on the next request.
    data(
        &admin
            .put(
                "/api/v1/admin/roles",
                &json!({"id": 2, "name": "用户", "keyName": "user", "desc": "普通用户", "rightIds": [3]}),
            )
            .await,
    );
    assert_refused(&member.get("/api/v1/currentUser").await, "1", "请登录");
    assert_refused(
        &server.client().login("member6", "123456").await,
        "1",
        "不具备登录权限",
    );
    let mut told = Vec::new();
    while let Ok(DomainEvent::AccessChanged { user_id }) = events.try_recv() {
        told.push(user_id);
    }
    assert_eq!(told.len(), 31, "user and member1..member30: {told:?}");
    assert!(told.contains(&9), "member5 told");
}

async fn paging_defaults_and_clamping(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let ids = |reply: &Value| -> Vec<i64> {
        data(reply)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["id"].as_i64().unwrap())
            .collect()
    };
    let count = |reply: &Value| data(reply)["count"].as_i64().unwrap();

    let absent = admin.get("/api/v1/admin/users").await;
    assert_eq!(ids(&absent), (1..=10).collect::<Vec<_>>());
    assert_eq!(count(&absent), 34);
    assert_eq!(
        ids(&admin
            .get("/api/v1/admin/users?pageSize=5&pageNumber=2")
            .await),
        (6..=10).collect::<Vec<_>>()
    );
    // Strings as the front end sends them, empty values, and out-of-range numbers.
    assert_eq!(
        ids(&admin.get("/api/v1/admin/users?pageSize=&pageNumber=").await),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&admin
            .get("/api/v1/admin/users?pageSize=0&pageNumber=-3")
            .await),
        vec![1]
    );
    let huge = admin
        .get("/api/v1/admin/users?pageSize=100000&pageNumber=1")
        .await;
    assert_eq!(ids(&huge), (1..=34).collect::<Vec<_>>());
    let beyond = admin
        .get("/api/v1/admin/users?pageSize=10&pageNumber=99999999999")
        .await;
    assert_eq!(ids(&beyond), Vec::<i64>::new());
    assert_eq!(count(&beyond), 34);
    assert_refused(
        &admin.get("/api/v1/admin/users?pageSize=ten").await,
        "1",
        "pageSize 必须是整数",
    );
    assert_refused(
        &admin.get("/api/v1/admin/groups?pageNumber=1.5").await,
        "1",
        "pageNumber 必须是整数",
    );
    assert_eq!(
        ids(&admin
            .get("/api/v1/admin/rights?pageSize=2&pageNumber=3")
            .await),
        vec![5]
    );
}

async fn sorter_variants(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let first_ids = |reply: &Value| -> Vec<i64> {
        data(reply)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .take(3)
            .map(|row| row["id"].as_i64().unwrap())
            .collect()
    };
    for query in [
        "",
        "?sorter=",
        "?sorter=%7B%7D",
        "?sorter=%7B%22unknown%22%3A%22descend%22%7D",
        "?sorter=%7B%22id%22%3A%22sideways%22%7D",
    ] {
        let reply = admin.get(&format!("/api/v1/admin/users{query}")).await;
        assert_eq!(
            first_ids(&reply),
            vec![1, 2, 3],
            "default order for {query:?}"
        );
    }
    assert_eq!(
        first_ids(
            &admin
                .get("/api/v1/admin/users?sorter=%7B%22id%22%3A%22descend%22%7D")
                .await
        ),
        vec![34, 33, 32]
    );
    // username ascending: admin, disabled, member1, ...
    let by_name = admin
        .get("/api/v1/admin/users?sorter=%7B%22username%22%3A%22ascend%22%7D")
        .await;
    assert_eq!(first_ids(&by_name), vec![1, 3, 5]);
    // createdAt: every demo user was created at the same instant, so ties fall back to id.
    assert_eq!(
        first_ids(
            &admin
                .get("/api/v1/admin/users?sorter=%7B%22createdAt%22%3A%22descend%22%7D")
                .await
        ),
        vec![1, 2, 3]
    );
    // Groups by updatedAt: the one changed last comes last ascending, first descending.
    data(
        &admin
            .put("/api/v1/admin/groups/mute", &json!({"id": 1, "mute": true}))
            .await,
    );
    assert_eq!(
        first_ids(
            &admin
                .get("/api/v1/admin/groups?sorter=%7B%22updatedAt%22%3A%22ascend%22%7D")
                .await
        ),
        vec![2, 1]
    );
    assert_eq!(
        first_ids(
            &admin
                .get("/api/v1/admin/groups?sorter=%7B%22updatedAt%22%3A%22descend%22%7D")
                .await
        ),
        vec![1, 2]
    );
    for bad in ["oops", "%5B1%5D", "%22createdAt%22", "%7B"] {
        for resource in ["users", "groups", "rights", "roles"] {
            assert_refused(
                &admin
                    .get(&format!("/api/v1/admin/{resource}?sorter={bad}"))
                    .await,
                "1",
                "sorter 必须是 JSON 对象，如 {\"createdAt\":\"descend\"}",
            );
        }
    }
}

/// `%00` in a query parameter was passed to PostgreSQL and answered HTTP 500 (found by
/// tests/schemathesis/run.sh); it is malformed input, as on every backend.
async fn nul_in_a_query_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    for query in [
        "username=mute%00user",
        "provider=lo%00cal",
        "sorter=%7B%22id%00%22%3A1%7D",
    ] {
        let (status, reply) = send(
            &admin,
            Method::GET,
            &format!("/api/v1/admin/users?{query}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{query}");
        assert_refused(&reply, "1", "参数校验失败");
    }
    let (status, reply) = send(
        &admin,
        Method::GET,
        "/api/v1/admin/users?username=mute",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(data(&reply)["count"], 1);
}

async fn users_list_shape_and_filters(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let reply = admin
        .get("/api/v1/admin/users?pageSize=10&pageNumber=1&sorter=%7B%7D&username=muteuser&provider=local")
        .await;
    assert_no_password(&reply);
    assert_eq!(
        mask_times(&reply),
        json!({"statusCode": "0", "errorMessage": null, "data": {"count": 1, "rows": [{
            "id": 4, "provider": "local", "username": "muteuser",
            "createdAt": "<time>", "updatedAt": "<time>",
            "userInfo": {"id": 4, "userId": 4, "nickname": "muteuser", "photo": "/public/images/head4.png",
                         "sign": "念念不忘，必有回响~", "createdAt": "<time>", "updatedAt": "<time>"},
            "roles": [role_json(4, "禁言", "mute", "禁言的用户")],
        }]}})
    );
    let names = |reply: &Value| -> Vec<String> {
        data(reply)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let contains = admin
        .get("/api/v1/admin/users?username=ember1&pageSize=20")
        .await;
    assert_eq!(data(&contains)["count"], 11);
    assert_eq!(names(&contains)[0], "member1");
    assert_eq!(names(&contains)[10], "member19");
    // Any case, on both backends.
    assert_eq!(
        names(
            &admin
                .get("/api/v1/admin/users?username=EMBER1&pageSize=20")
                .await
        ),
        names(&contains)
    );
    // `%` and `_` are literal: the original's LIKE matched every user with them.
    for wildcard in ["%25", "_", "member_", "%5C"] {
        let reply = admin
            .get(&format!("/api/v1/admin/users?username={wildcard}"))
            .await;
        assert_eq!(data(&reply), &json!({"count": 0, "rows": []}), "{wildcard}");
    }
    assert_eq!(
        data(&admin.get("/api/v1/admin/users?provider=local").await)["count"],
        34
    );
    assert_eq!(
        data(&admin.get("/api/v1/admin/users?provider=github").await),
        &json!({"count": 0, "rows": []})
    );
    assert_eq!(
        data(&admin.get("/api/v1/admin/users?username=&provider=").await)["count"],
        34
    );
    // A user with several roles lists them all, in id order.
    data(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 5, "roleIds": [4, 2]}),
            )
            .await,
    );
    let member1 = admin
        .get("/api/v1/admin/users?username=member1&pageSize=1")
        .await;
    assert_eq!(
        mask_times(&data(&member1)["rows"][0]["roles"]),
        json!([
            role_json(2, "用户", "user", "普通用户"),
            role_json(4, "禁言", "mute", "禁言的用户")
        ])
    );
}

fn group_json(id: i64, name: &str, conversation: i64, disabled: bool, mute: bool) -> Value {
    json!({"id": id, "name": name, "photo": "/public/images/group.png",
           "introduction": "富强、民主、文明、和谐、自由、平等、公正、法治、爱国、敬业、诚信、友善",
           "disabled": disabled, "mute": mute, "ownerId": 2, "conversationId": conversation,
           "createdAt": "<time>", "updatedAt": "<time>"})
}

async fn groups_list_disable_and_mute(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    assert_eq!(
        mask_times(
            &admin
                .get("/api/v1/admin/groups?pageSize=10&pageNumber=1&sorter=%7B%7D")
                .await
        ),
        json!({"statusCode": "0", "errorMessage": null, "data": {"count": 2, "rows": [
            group_json(1, "谈笑有鸿儒", 27, false, false),
            group_json(2, "往来无白丁", 28, false, false),
        ]}})
    );
    let mut events = server.app.events.subscribe();
    assert_eq!(
        admin
            .put(
                "/api/v1/admin/groups/disabled",
                &json!({"id": 1, "disabled": true})
            )
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::GroupChanged { group_id: 1 }
    );
    data(
        &admin
            .put("/api/v1/admin/groups/mute", &json!({"id": 2, "mute": true}))
            .await,
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::GroupChanged { group_id: 2 }
    );
    assert_eq!(
        mask_times(data(&admin.get("/api/v1/admin/groups").await)),
        json!({"count": 2, "rows": [
            group_json(1, "谈笑有鸿儒", 27, true, false),
            group_json(2, "往来无白丁", 28, false, true),
        ]})
    );
    data(
        &admin
            .put(
                "/api/v1/admin/groups/disabled",
                &json!({"id": 1, "disabled": false}),
            )
            .await,
    );
    data(
        &admin
            .put(
                "/api/v1/admin/groups/mute",
                &json!({"id": 2, "mute": false}),
            )
            .await,
    );
    assert_eq!(
        mask_times(data(&admin.get("/api/v1/admin/groups").await)),
        json!({"count": 2, "rows": [
            group_json(1, "谈笑有鸿儒", 27, false, false),
            group_json(2, "往来无白丁", 28, false, false),
        ]})
    );
    for path in ["/api/v1/admin/groups/disabled", "/api/v1/admin/groups/mute"] {
        assert_refused(
            &admin
                .put(path, &json!({"id": 99, "disabled": true, "mute": true}))
                .await,
            "1",
            "群组不存在",
        );
        assert_refused(
            &admin
                .put(path, &json!({"id": 1, "disabled": "yes", "mute": "yes"}))
                .await,
            "1",
            "参数校验失败",
        );
    }
}

async fn ban_ends_sessions_at_once_and_blocks_login(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let member = server.logged_in("member3").await;
    let token = data(&server.client().login("member3", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = server.app.events.subscribe();
    assert_eq!(
        admin
            .put(
                "/api/v1/admin/users/disabled",
                &json!({"id": 7, "disabled": true})
            )
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::AccessChanged { user_id: 7 }
    );
    assert_refused(&member.get("/api/v1/currentUser").await, "1", "请登录");
    let by_token: Value = member
        .http
        .get(format!("{}/api/v1/currentUser", member.base))
        .header("token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_refused(&by_token, "1", "请登录");
    // The sessions are gone, not only refused: restoring the user does not bring them back.
    assert_eq!(server.app.sessions.revoke_user(7).await.unwrap(), 0);
    assert_refused(
        &server.client().login("member3", "123456").await,
        "1",
        "不具备登录权限",
    );
    let row = admin
        .get("/api/v1/admin/users?username=member3&pageSize=1")
        .await;
    assert_eq!(
        mask_times(&data(&row)["rows"][0]["roles"]),
        json!([role_json(3, "封禁", "disabled", "封禁的用户")])
    );

    data(
        &admin
            .put(
                "/api/v1/admin/users/disabled",
                &json!({"id": 7, "disabled": false}),
            )
            .await,
    );
    assert_refused(&member.get("/api/v1/currentUser").await, "1", "请登录");
    let again = server.logged_in("member3").await;
    assert_eq!(
        data(&again.get("/api/v1/currentUser").await)["roles"][0]["keyName"],
        "user"
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users/disabled",
                &json!({"id": 999, "disabled": true}),
            )
            .await,
        "1",
        "用户不存在",
    );
    assert_refused(
        &admin
            .put("/api/v1/admin/users/disabled", &json!({"id": 7}))
            .await,
        "1",
        "参数校验失败",
    );
}

async fn mute_and_role_changes_act_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let member = server.logged_in("member4").await;
    let rights = |reply: &Value| -> Vec<String> {
        data(reply)["rights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|right| right["keyName"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        rights(&member.get("/api/v1/currentUser").await),
        ["login", "speak"]
    );
    let mut events = server.app.events.subscribe();
    data(
        &admin
            .put("/api/v1/admin/users/mute", &json!({"id": 8, "mute": true}))
            .await,
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::AccessChanged { user_id: 8 }
    );
    // Muted: still logged in, no longer allowed to speak.
    assert_eq!(rights(&member.get("/api/v1/currentUser").await), ["login"]);
    data(
        &admin
            .put("/api/v1/admin/users/mute", &json!({"id": 8, "mute": false}))
            .await,
    );
    assert_eq!(
        rights(&member.get("/api/v1/currentUser").await),
        ["login", "speak"]
    );
    // Made an admin: the back office opens on the very next request, and closes again.
    let (status, _) = send(&member, Method::GET, "/api/v1/admin/rights", None).await;
    assert_eq!(status, 403);
    data(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 8, "roleIds": [1, 2]}),
            )
            .await,
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::AccessChanged { user_id: 8 }
    );
    data(&member.get("/api/v1/admin/rights").await);
    data(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 8, "roleIds": [2]}),
            )
            .await,
    );
    let (status, reply) = send(&member, Method::GET, "/api/v1/admin/rights", None).await;
    assert_eq!(status, 403);
    assert_refused(&reply, "1", "无此权限");
    // No roles at all: no login right, so the session ends.
    data(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 8, "roleIds": []}),
            )
            .await,
    );
    assert_refused(&member.get("/api/v1/currentUser").await, "1", "请登录");
}

async fn user_role_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 8, "roleIds": [2, 99]}),
            )
            .await,
        "1",
        "角色不存在",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 999, "roleIds": [2]}),
            )
            .await,
        "1",
        "用户不存在",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users/roles",
                &json!({"id": 8, "roleIds": "2"}),
            )
            .await,
        "1",
        "参数校验失败",
    );
    assert_refused(
        &admin
            .put(
                "/api/v1/admin/users/mute",
                &json!({"id": 999, "mute": true}),
            )
            .await,
        "1",
        "用户不存在",
    );
    // An admin cannot lock themselves out.
    for (path, body) in [
        (
            "/api/v1/admin/users/roles",
            json!({"id": 1, "roleIds": [2]}),
        ),
        (
            "/api/v1/admin/users/disabled",
            json!({"id": 1, "disabled": true}),
        ),
        ("/api/v1/admin/users/mute", json!({"id": 1, "mute": true})),
    ] {
        assert_refused(&admin.put(path, &body).await, "1", "不能对自己执行此操作");
    }
    assert_refused(
        &admin.delete("/api/v1/admin/users", &json!({"id": 1})).await,
        "1",
        "不能对自己执行此操作",
    );
    // Nothing was half-changed by the refused requests.
    let row = admin
        .get("/api/v1/admin/users?username=member4&pageSize=1")
        .await;
    assert_eq!(
        mask_times(&data(&row)["rows"][0]["roles"]),
        json!([role_json(2, "用户", "user", "普通用户")])
    );
    data(&admin.get("/api/v1/admin/rights").await);
}

async fn chat_user_create_and_edit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    // An avatar is a default one or a file the admin uploaded.
    let avatar = admin.upload_png().await;
    assert_refused(
        &admin
            .post(
                "/api/v1/admin/users",
                &json!({"username": "newcomer", "password": "secret1", "avatar": "https://evil.example/x.png"}),
            )
            .await,
        "1",
        "参数校验失败",
    );
    let created = admin
        .post(
            "/api/v1/admin/users",
            &json!({"username": "newcomer", "password": "secret1", "avatar": avatar}),
        )
        .await;
    assert_no_password(&created);
    assert_eq!(
        mask_times(&created),
        json!({"statusCode": "0", "errorMessage": null, "data": {
            "id": 35, "provider": "local", "username": "newcomer",
            "createdAt": "<time>", "updatedAt": "<time>",
            "userInfo": {"id": 35, "userId": 35, "nickname": "newcomer", "photo": avatar,
                         "sign": null, "createdAt": "<time>", "updatedAt": "<time>"},
            "roles": [role_json(2, "用户", "user", "普通用户")],
        }})
    );
    let newcomer = server.client();
    data(&newcomer.login("newcomer", "secret1").await);
    let plain = admin
        .post(
            "/api/v1/admin/users",
            &json!({"username": "plainone", "password": "secret1"}),
        )
        .await;
    let photo = data(&plain)["userInfo"]["photo"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        photo.starts_with("/public/images/head") && photo.ends_with(".png"),
        "{photo}"
    );
    assert_refused(
        &admin
            .post(
                "/api/v1/admin/users",
                &json!({"username": "newcomer", "password": "secret1"}),
            )
            .await,
        "1",
        "用户名重复",
    );
    for bad in [
        json!({"username": "abc", "password": "secret1"}),
        json!({"username": "abcd", "password": "12345"}),
        json!({"username": "abcd"}),
        json!({"username": "ab\ncd", "password": "secret1"}),
    ] {
        assert_refused(
            &admin.post("/api/v1/admin/users", &bad).await,
            "1",
            "参数校验失败",
        );
    }

    let second = admin.upload_png().await;
    assert_eq!(
        admin
            .put(
                "/api/v1/admin/users",
                &json!({"id": 35, "nickname": "新人", "sign": "你好", "photo": second}),
            )
            .await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    let me = newcomer.get("/api/v1/currentUser").await;
    assert_eq!(
        mask_times(&data(&me)["userInfo"]),
        json!({"id": 35, "userId": 35, "nickname": "新人", "photo": second,
               "sign": "你好", "createdAt": "<time>", "updatedAt": "<time>"})
    );
    // A new password logs out whoever held the old one.
    data(
        &admin
            .put(
                "/api/v1/admin/users",
                &json!({"id": 35, "password": "changed1"}),
            )
            .await,
    );
    assert_refused(&newcomer.get("/api/v1/currentUser").await, "1", "请登录");
    assert_refused(
        &server.client().login("newcomer", "secret1").await,
        "1",
        "密码错误",
    );
    data(&server.client().login("newcomer", "changed1").await);
    assert_refused(
        &admin
            .put("/api/v1/admin/users", &json!({"id": 999, "nickname": "x"}))
            .await,
        "1",
        "用户不存在",
    );
    for bad in [
        json!({"id": 35, "nickname": ""}),
        json!({"id": 35, "password": "123"}),
        json!({"nickname": "x"}),
    ] {
        assert_refused(
            &admin.put("/api/v1/admin/users", &bad).await,
            "1",
            "参数校验失败",
        );
    }
}

async fn chat_user_delete_removes_what_belongs_to_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    let member = server.logged_in("member1").await;
    let mut conn = server.app.db.get().await.unwrap();
    let before = store::stats::table_counts(&mut conn).await.unwrap();
    let mut events = server.app.events.subscribe();
    // member1 (id 5): a member of both groups, the sender of apply 1, no friendship.
    assert_eq!(
        admin.delete("/api/v1/admin/users", &json!({"id": 5})).await,
        json!({"statusCode": "0", "errorMessage": null, "data": null})
    );
    assert_eq!(
        events.try_recv().unwrap(),
        DomainEvent::AccessChanged { user_id: 5 }
    );
    assert_refused(&member.get("/api/v1/currentUser").await, "1", "请登录");
    assert_refused(
        &server.client().login("member1", "123456").await,
        "1",
        "用户名错误",
    );
    let after = store::stats::table_counts(&mut conn).await.unwrap();
    assert_eq!(after.users, before.users - 1);
    assert_eq!(after.applies, before.applies - 1);
    assert_eq!(after.friends, before.friends);
    assert!(!store::groups::is_member(&mut conn, 1, 5).await.unwrap());

    // member3 (id 7): a friend of `user`; the friendship and its conversation go too.
    data(&admin.delete("/api/v1/admin/users", &json!({"id": 7})).await);
    let after_friend = store::stats::table_counts(&mut conn).await.unwrap();
    assert_eq!(after_friend.friends, before.friends - 1);
    assert_eq!(after_friend.conversations, before.conversations - 1);

    // `user` (id 2) owns both groups: they are deleted with their conversations and the
    // group apply; so are the 25 remaining friendships and their conversations.
    data(&admin.delete("/api/v1/admin/users", &json!({"id": 2})).await);
    let events: Vec<DomainEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        events.contains(&DomainEvent::GroupChanged { group_id: 1 }),
        "{events:?}"
    );
    assert!(
        events.contains(&DomainEvent::GroupChanged { group_id: 2 }),
        "{events:?}"
    );
    let last = store::stats::table_counts(&mut conn).await.unwrap();
    assert_eq!(last.users, before.users - 3);
    assert_eq!(last.groups, 0);
    assert_eq!(last.friends, 0);
    assert_eq!(last.conversations, 0);
    assert_eq!(last.applies, 0);
    assert_eq!(
        data(&admin.get("/api/v1/admin/groups").await),
        &json!({"count": 0, "rows": []})
    );

    assert_refused(
        &admin.delete("/api/v1/admin/users", &json!({"id": 2})).await,
        "1",
        "用户不存在",
    );
    assert_refused(
        &admin
            .delete("/api/v1/admin/users", &json!({"id": "x"}))
            .await,
        "1",
        "参数校验失败",
    );
}

async fn unknown_admin_route_is_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.logged_in("admin").await;
    for (method, path) in [
        (Method::GET, "/api/v1/admin/nothing"),
        (Method::POST, "/api/v1/admin/groups"),
        (Method::DELETE, "/api/v1/admin/groups/mute"),
    ] {
        let (status, reply) = send(&admin, method, path, Some(&json!({}))).await;
        assert_eq!(
            (status, reply),
            (404, json!({"message": "Not Found"})),
            "{path}"
        );
    }
    let (status, reply) = send(&server.client(), Method::GET, "/api/v1/admin/nothing", None).await;
    assert_eq!(status, 200);
    assert_refused(&reply, "1", "请登录");
}
