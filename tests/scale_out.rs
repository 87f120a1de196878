//! Scale-out: three `im-server` processes on one PostgreSQL database and one Redis, behind nginx
//! configured by the repository's nginx.conf. Needs PostgreSQL, Redis and nginx (.ci/run has them).

mod common;

use common::cluster::Cluster;
use common::{Backend, assert_refused, data, redis_url};
use serde_json::json;

/// PostgreSQL and Redis of the test machine, or `None` outside CI when they are not configured.
fn services() -> Option<(String, String)> {
    let Some(Backend::Postgres(pg)) = Backend::postgres() else {
        return None;
    };
    Some((pg, redis_url()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_one_process_works_on_the_others() {
    let Some((pg, redis)) = services() else {
        return;
    };
    let cluster = Cluster::start(&pg, &redis, 3).await;

    // Log in through nginx; the cookie then opens every process.
    let browser = cluster.client();
    let token = data(&browser.login("user", "123456").await)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(data(&browser.get("/api/v1/currentUser").await)["id"], 2);
    for n in 0..3 {
        let direct = cluster.direct(n);
        let reply: serde_json::Value = direct
            .http
            .get(format!("{}/api/v1/currentUser", direct.base))
            .header("token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(data(&reply)["id"], 2, "process {n}");
    }

    // Logging out on one process ends the session on all of them.
    let direct = cluster.direct(2);
    let reply: serde_json::Value = direct
        .http
        .post(format!("{}/api/v1/logout", direct.base))
        .header("token", &token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data(&reply);
    assert_refused(&browser.get("/api/v1/currentUser").await, "1", "请登录");
    for process in &cluster.processes {
        assert!(!process.log().contains("ERROR"), "{}", process.log());
    }
}
