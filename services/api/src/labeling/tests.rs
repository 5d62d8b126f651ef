//! The labeling routes over real HTTP ([`crate::testing`]), with a simulated clusterlink
//! reporting namespaces and LabelMaps on the bus.

use bulkhead_schema::testing::{annotated, mk_label_map, mk_map_item, mk_namespace};
use reqwest::Method;
use serde_json::{Value, json};

use crate::testing::{self, Answer, Stack, credentials, error_code};

/// The stack, once labeling has caught up with the log and serves (503 until then).
async fn start() -> Stack {
    let stack = testing::start().await;
    stack
        .eventually(Method::GET, "/label_dimensions", None, 200)
        .await;
    stack
}

impl Stack {
    /// Pairs a cluster, and waits until labeling knows it too; its id and token.
    async fn cluster(&self, name: &str) -> (String, String) {
        let cluster = credentials(&self.create_cluster(name).await);
        let template = format!(
            "/container_clusters/{}/container_workload_profile_template",
            cluster.0
        );
        self.eventually(Method::GET, &template, None, 200).await;
        cluster
    }

    /// Creates a label group; its href.
    async fn group(&self, body: Value) -> String {
        let (status, _, group) = self.post("/label_groups", body).await;
        assert_eq!(status, 201, "{group}");
        group["href"].as_str().unwrap().to_owned()
    }
}

/// The `/labels/<id>` part of an href, for paths.
fn path_of(href: &str) -> &str {
    href.strip_prefix("/orgs/1").unwrap()
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

/// Asserts that each request got `status` in the error shape.
fn assert_refused(answers: &[(&str, Answer)], status: u16) {
    for (what, (got, _, body)) in answers {
        assert_eq!(*got, status, "{what}: {body}");
        error_code(body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_dimensions_and_labels_are_created_renamed_and_deleted() {
    let stack = start().await;
    let (status, total, keys) = stack.get("/label_dimensions").await;
    assert_eq!((status, total), (200, Some(4)));
    assert_eq!(keys[0]["href"], "/orgs/1/label_dimensions/app", "by key");
    assert_eq!(keys[0]["builtin"], true);

    let (status, _, team) = stack
        .post(
            "/label_dimensions",
            json!({ "key": "team", "display_name": "Team" }),
        )
        .await;
    assert_eq!(
        (status, team["href"].clone()),
        (201, json!("/orgs/1/label_dimensions/team"))
    );
    let (status, _, got) = stack.get("/label_dimensions/team").await;
    assert_eq!((status, got), (200, team));
    assert_refused(
        &[
            ("unknown key", stack.get("/label_dimensions/nope").await),
            (
                "delete unknown",
                stack.delete("/label_dimensions/nope").await,
            ),
        ],
        404,
    );
    assert_refused(
        &[
            (
                "duplicate",
                stack
                    .post("/label_dimensions", json!({ "key": "team" }))
                    .await,
            ),
            (
                "built-in",
                stack
                    .post("/label_dimensions", json!({ "key": "role" }))
                    .await,
            ),
        ],
        409,
    );
    assert_refused(
        &[
            (
                "malformed key",
                stack
                    .post("/label_dimensions", json!({ "key": "Team!" }))
                    .await,
            ),
            (
                "bad JSON",
                stack.garbage(Method::POST, "/label_dimensions").await,
            ),
            (
                "delete built-in",
                stack.delete("/label_dimensions/role").await,
            ),
        ],
        400,
    );
    assert_refused(
        &[(
            "unknown field",
            stack
                .post(
                    "/label_dimensions",
                    json!({ "key": "x", "displayname": "X" }),
                )
                .await,
        )],
        422,
    );
    assert_eq!(
        stack.get("/label_dimensions").await.1,
        Some(5),
        "nothing else was added"
    );

    let web = stack.label("role", "web").await;
    let (status, _, label) = stack.get(path_of(&web)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            label["key"].clone(),
            label["value"].clone(),
            label["created_by"].clone()
        ),
        (json!("role"), json!("web"), json!("api"))
    );
    assert_eq!(label["usage"]["entities"], 0);
    stack.label("role", "db").await;
    stack.label("team", "payments").await;

    assert_refused(
        &[
            (
                "same value, other case",
                stack
                    .post("/labels", json!({ "key": "role", "value": "WEB" }))
                    .await,
            ),
            (
                "rename onto another",
                stack.put(path_of(&web), json!({ "value": "db" })).await,
            ),
        ],
        409,
    );
    assert_refused(
        &[
            (
                "unknown key",
                stack
                    .post("/labels", json!({ "key": "tier", "value": "x" }))
                    .await,
            ),
            ("unknown label", stack.get("/labels/999").await),
            (
                "rename unknown",
                stack.put("/labels/999", json!({ "value": "x" })).await,
            ),
            ("delete unknown", stack.delete("/labels/999").await),
        ],
        404,
    );
    assert_refused(
        &[
            (
                "empty value",
                stack
                    .post("/labels", json!({ "key": "role", "value": " " }))
                    .await,
            ),
            ("bad JSON", stack.garbage(Method::POST, "/labels").await),
            (
                "bad JSON rename",
                stack.garbage(Method::PUT, path_of(&web)).await,
            ),
            ("id not a number", stack.get("/labels/web").await),
            ("max_results 0", stack.get("/labels?max_results=0").await),
            (
                "max_results too large",
                stack.get("/labels?max_results=1001").await,
            ),
        ],
        400,
    );
    assert_refused(
        &[(
            "no value",
            stack.put(path_of(&web), json!({ "name": "x" })).await,
        )],
        422,
    );

    let (status, total, labels) = stack.get("/labels?key=role").await;
    assert_eq!(
        (status, total),
        (200, Some(2)),
        "nothing else was added: {labels}"
    );
    assert_eq!(labels[0]["value"], "db", "by key, then value");
    let (_, total, labels) = stack.get("/labels?value=WE").await;
    assert_eq!((total, labels[0]["href"].clone()), (Some(1), json!(web)));
    let (_, total, page) = stack.get("/labels?max_results=1&offset=1").await;
    assert_eq!((total, page.as_array().unwrap().len()), (Some(3), 1));

    let (status, _, body) = stack
        .put(path_of(&web), json!({ "value": "frontend" }))
        .await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(stack.get(path_of(&web)).await.2["value"], "frontend");

    let (status, _, body) = stack.delete("/label_dimensions/team").await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    assert!(
        error_message(&body).contains("1 labels")
            && error_message(&body).contains("remove those uses first"),
        "{body}"
    );
    assert_eq!(
        stack.get("/label_dimensions/team").await.0,
        200,
        "still there"
    );

    let payments = stack.get("/labels?key=team").await.2[0]["href"].clone();
    assert_eq!(
        stack.delete(path_of(payments.as_str().unwrap())).await.0,
        204
    );
    assert_eq!(stack.delete("/label_dimensions/team").await.0, 204);
    assert_eq!(stack.get("/label_dimensions").await.1, Some(4));
    assert_eq!(stack.delete(path_of(&web)).await.0, 204);
    assert_eq!(stack.get(path_of(&web)).await.0, 404);
    assert_eq!(stack.get("/labels").await.1, Some(1));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_groups_nest_and_are_not_deleted_while_used() {
    let stack = start().await;
    let prod = stack.label("env", "prod").await;
    let staging = stack.label("env", "staging").await;
    let dev = stack.label("env", "dev").await;
    let web = stack.label("role", "web").await;

    let non_prod = stack
        .group(json!({
            "key": "env", "name": "Non-prod",
            "labels": [{ "href": staging }, { "href": dev }],
        }))
        .await;
    let all = stack
        .group(json!({
            "key": "env", "name": "All",
            "labels": [{ "href": prod }], "sub_groups": [{ "href": non_prod }],
        }))
        .await;
    let (status, _, group) = stack.get(path_of(&all)).await;
    assert_eq!(status, 200);
    assert_eq!(group["sub_groups"], json!([{ "href": non_prod }]));
    assert_eq!(group["labels"], json!([{ "href": prod }]));

    assert_refused(
        &[(
            "duplicate name",
            stack
                .post("/label_groups", json!({ "key": "env", "name": "all" }))
                .await,
        )],
        409,
    );
    assert_refused(
        &[
            (
                "label of another key",
                stack
                    .post(
                        "/label_groups",
                        json!({ "key": "env", "name": "x", "labels": [{ "href": web }] }),
                    )
                    .await,
            ),
            (
                "a label as sub-group",
                stack
                    .post(
                        "/label_groups",
                        json!({ "key": "env", "name": "x", "sub_groups": [{ "href": prod }] }),
                    )
                    .await,
            ),
            (
                "not an href",
                stack
                    .post(
                        "/label_groups",
                        json!({ "key": "env", "name": "x", "labels": [{ "href": "prod" }] }),
                    )
                    .await,
            ),
            (
                "a cycle",
                stack
                    .put(
                        path_of(&non_prod),
                        json!({ "sub_groups": [{ "href": all }] }),
                    )
                    .await,
            ),
            ("bad JSON", stack.garbage(Method::PUT, path_of(&all)).await),
        ],
        400,
    );
    assert_refused(
        &[
            ("unknown label", stack.post("/label_groups", json!({ "key": "env", "name": "x", "labels": [{ "href": "/orgs/1/labels/999" }] })).await),
            ("unknown group", stack.get("/label_groups/999").await),
            ("update unknown", stack.put("/label_groups/999", json!({ "name": "x" })).await),
        ],
        404,
    );
    assert_refused(
        &[(
            "unknown field",
            stack.put(path_of(&all), json!({ "members": [] })).await,
        )],
        422,
    );
    let (_, total, groups) = stack.get("/label_groups?key=env").await;
    assert_eq!(total, Some(2), "nothing else was added: {groups}");
    assert_eq!(stack.get("/label_groups?key=role").await.1, Some(0));
    assert_eq!(
        stack.get(path_of(&non_prod)).await.2["sub_groups"],
        json!([]),
        "the refused cycle changed nothing"
    );

    let (status, _, _) = stack
        .put(
            path_of(&non_prod),
            json!({ "name": "Pre-prod", "labels": [{ "href": staging }] }),
        )
        .await;
    assert_eq!(status, 204);
    let (_, _, changed) = stack.get(path_of(&non_prod)).await;
    assert_eq!(
        (changed["name"].clone(), changed["labels"].clone()),
        (json!("Pre-prod"), json!([{ "href": staging }]))
    );

    let (status, _, body) = stack.delete(path_of(&non_prod)).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    assert!(error_message(&body).contains("1 label groups"), "{body}");
    let (status, _, body) = stack.delete(path_of(&staging)).await;
    assert_eq!(status, 409, "a group holds it: {body}");

    assert_eq!(stack.delete(path_of(&all)).await.0, 204);
    assert_eq!(stack.delete(path_of(&non_prod)).await.0, 204);
    assert_eq!(stack.get(path_of(&non_prod)).await.0, 404);
    assert_eq!(stack.delete(path_of(&staging)).await.0, 204);
    assert_eq!(stack.get("/label_groups").await.1, Some(0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_follow_the_template_and_link_by_pairing_key() {
    let stack = start().await;
    let cluster = stack.cluster("prod").await;
    let id = cluster.0.clone();
    let prod = stack.label("env", "prod").await;
    let web = stack.label("role", "web").await;
    let tier = stack
        .group(json!({ "key": "role", "name": "Front", "labels": [{ "href": web }] }))
        .await;

    let template = format!("/container_clusters/{id}/container_workload_profile_template");
    let (status, _, defaults) = stack.get(&template).await;
    assert_eq!(status, 200);
    assert_eq!(
        defaults,
        json!({
            "href": format!("/orgs/1{template}"), "cluster_id": id,
            "managed": false, "enforcement_mode": "visibility_only", "labels": [],
        })
    );
    let settings = json!({
        "managed": true, "enforcement_mode": "test",
        "labels": [{ "key": "env", "assignment": { "href": prod } }],
    });
    assert_eq!(stack.put(&template, settings.clone()).await.0, 204);
    assert_refused(
        &[
            (
                "neither assignment nor restriction",
                stack
                    .put(&template, json!({ "labels": [{ "key": "env" }] }))
                    .await,
            ),
            (
                "a group as assignment",
                stack
                    .put(
                        &template,
                        json!({ "labels": [{ "key": "role", "assignment": { "href": tier } }] }),
                    )
                    .await,
            ),
            ("bad JSON", stack.garbage(Method::PUT, &template).await),
        ],
        400,
    );
    assert_refused(
        &[
            (
                "unknown mode",
                stack
                    .put(&template, json!({ "enforcement_mode": "loud" }))
                    .await,
            ),
            (
                "unknown field",
                stack
                    .put(&template, json!({ "enforcment_mode": "full" }))
                    .await,
            ),
        ],
        422,
    );
    let (_, _, now) = stack.get(&template).await;
    assert_eq!(
        (
            now["managed"].clone(),
            now["enforcement_mode"].clone(),
            now["labels"].clone()
        ),
        (
            settings["managed"].clone(),
            settings["enforcement_mode"].clone(),
            settings["labels"].clone()
        ),
        "the refused ones changed nothing"
    );

    let profiles = format!("/container_clusters/{id}/container_workload_profiles");
    let (status, _, created) = stack
        .post(
            &profiles,
            json!({
                "name": "payments", "managed": true, "enforcement_mode": "full",
                "labels": [{ "key": "app", "restriction": [] }],
            }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["pairing_key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 32, "{key}");
    assert_eq!(
        (created["state"].clone(), created["origin"].clone()),
        (json!("pending"), json!("pre_created"))
    );
    let href = created["href"].as_str().unwrap().to_owned();
    assert!(href.starts_with(&format!("/orgs/1{profiles}/")), "{href}");
    let (status, total, listed) = stack.get(&profiles).await;
    assert_eq!((status, total), (200, Some(1)));
    assert!(
        listed[0].get("pairing_key").is_none(),
        "the key is shown once"
    );
    let (status, _, one) = stack.get(path_of(&href)).await;
    assert_eq!((status, one["name"].clone()), (200, json!("payments")));
    assert!(one.get("pairing_key").is_none());

    let changes = json!({
        "enforcement_mode": "idle",
        "labels": [{ "key": "role", "restriction": [{ "href": web }, { "href": tier }] }],
    });
    assert_eq!(stack.put(path_of(&href), changes).await.0, 204);
    let (_, _, changed) = stack.get(path_of(&href)).await;
    assert_eq!(
        (
            changed["managed"].clone(),
            changed["enforcement_mode"].clone()
        ),
        (json!(true), json!("idle")),
        "what is left out stays"
    );
    assert_eq!(
        changed["labels"],
        json!([{ "key": "role", "restriction": [{ "href": web }, { "href": tier }] }])
    );
    let (status, _, body) = stack.delete(path_of(&web)).await;
    assert_eq!(
        (status, error_code(&body)),
        (409, "conflict"),
        "the profile names it"
    );
    assert_refused(
        &[
            ("unknown cluster", stack.post("/container_clusters/nope/container_workload_profiles", json!({ "name": "x" })).await),
            ("list of unknown cluster", stack.get("/container_clusters/nope/container_workload_profiles").await),
            ("template of unknown cluster", stack.get("/container_clusters/nope/container_workload_profile_template").await),
            ("unknown profile", stack.get(&format!("{profiles}/nope")).await),
            ("update unknown", stack.put(&format!("{profiles}/nope"), json!({ "managed": true })).await),
            ("unknown label", stack.put(path_of(&href), json!({ "labels": [{ "key": "env", "assignment": { "href": "/orgs/1/labels/999" } }] })).await),
        ],
        404,
    );
    assert_refused(
        &[
            (
                "empty name",
                stack.post(&profiles, json!({ "name": "" })).await,
            ),
            ("bad JSON", stack.garbage(Method::POST, &profiles).await),
        ],
        400,
    );
    assert_eq!(
        stack.get(&profiles).await.1,
        Some(1),
        "nothing else was added"
    );

    // A namespace carrying the key links the profile; one without gets its own, from the
    // template.
    stack
        .report(
            &cluster,
            vec![
                annotated(
                    mk_namespace("payments"),
                    &[("bulkhead.io/pairing-key", &key)],
                ),
                mk_namespace("shop"),
            ],
        )
        .await;
    let listed = stack
        .until(&profiles, |list| {
            list.as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|p| p["state"] == "linked"))
        })
        .await;
    let linked = &listed[0];
    assert_eq!(
        (
            linked["name"].clone(),
            linked["namespace"].clone(),
            linked["state"].clone()
        ),
        (json!("payments"), json!("payments"), json!("linked"))
    );
    let own = &listed[1];
    assert_eq!(
        (
            own["namespace"].clone(),
            own["origin"].clone(),
            own["enforcement_mode"].clone()
        ),
        (json!("shop"), json!("namespace"), json!("test"))
    );
    let (_, total, shop) = stack.get(&format!("{profiles}?namespace=shop")).await;
    assert_eq!(
        (total, shop[0]["href"].clone()),
        (Some(1), own["href"].clone())
    );
    let (status, _, body) = stack.delete(path_of(own["href"].as_str().unwrap())).await;
    assert_eq!(
        status, 400,
        "a namespace's own profile goes with its namespace: {body}"
    );

    assert_eq!(stack.delete(path_of(&href)).await.0, 204);
    assert_eq!(stack.get(path_of(&href)).await.0, 404);
    stack
        .until(&format!("{profiles}?namespace=payments"), |list| {
            list[0]["origin"] == "namespace"
        })
        .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_maps_are_put_listed_and_deleted_beside_custom_resources() {
    let stack = start().await;
    let cluster = stack.cluster("prod").await;
    let id = cluster.0.clone();
    let name_to_app = mk_map_item("app.kubernetes.io/name", "app", &[], false);
    stack
        .report(
            &cluster,
            vec![mk_label_map("from-cluster", vec![], vec![name_to_app])],
        )
        .await;
    let maps = format!("/container_clusters/{id}/label_maps");
    stack
        .until(&maps, |list| list.as_array().is_some_and(|l| l.len() == 1))
        .await;

    let ours = format!("{maps}/team%20maps");
    let rules = json!({
        "node_label_map": [{ "from_key": "topology.kubernetes.io/zone", "to_key": "loc",
            "values_map": [{ "from": "us-east-1a", "to": "east" }], "allow_create": true }],
        "workload_label_map": [{ "from_key": "app.kubernetes.io/name", "to_key": "app",
            "allow_create": false }],
    });
    let (status, _, body) = stack.put(&ours, rules.clone()).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, total, listed) = stack.get(&maps).await;
    assert_eq!((status, total), (200, Some(2)));
    assert_eq!(
        (listed[0]["name"].clone(), listed[0]["origin"].clone()),
        (json!("from-cluster"), json!("custom_resource")),
        "custom resources first"
    );
    assert!(listed[0].get("href").is_none(), "changed with kubectl only");
    assert_eq!(listed[1]["href"], format!("/orgs/1{ours}"));
    assert_eq!(listed[1]["origin"], "api");
    let (status, _, map) = stack.get(&ours).await;
    assert_eq!((status, map["name"].clone()), (200, json!("team maps")));
    assert_eq!(map["spec"], rules);

    let (status, _, body) = stack.get(&format!("{maps}/from-cluster")).await;
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("custom resource"), "{body}");
    assert_refused(
        &[
            ("unknown map", stack.get(&format!("{maps}/nope")).await),
            (
                "delete unknown",
                stack.delete(&format!("{maps}/nope")).await,
            ),
            (
                "delete a custom resource",
                stack.delete(&format!("{maps}/from-cluster")).await,
            ),
            (
                "unknown to_key",
                stack
                    .put(
                        &ours,
                        json!({ "workload_label_map": [{ "from_key": "a", "to_key": "tier" }] }),
                    )
                    .await,
            ),
            (
                "unknown cluster",
                stack.get("/container_clusters/nope/label_maps").await,
            ),
            (
                "put to unknown cluster",
                stack
                    .put("/container_clusters/nope/label_maps/x", rules.clone())
                    .await,
            ),
        ],
        404,
    );
    let twice = json!({ "workload_label_map": [
        { "from_key": "a", "to_key": "app" }, { "from_key": "a", "to_key": "role" },
    ] });
    assert_refused(
        &[
            ("from_key twice", stack.put(&ours, twice).await),
            ("bad JSON", stack.garbage(Method::PUT, &ours).await),
        ],
        400,
    );
    assert_refused(
        &[(
            "the custom resource's spelling",
            stack
                .put(
                    &ours,
                    json!({ "workloadLabelMap": [{ "fromKey": "a", "toKey": "app" }] }),
                )
                .await,
        )],
        422,
    );
    assert_eq!(
        stack.get(&ours).await.2["spec"],
        rules,
        "the refused ones changed nothing"
    );

    // A label a rule translates to is in use.
    let east = stack.label("loc", "east").await;
    let (status, _, body) = stack.delete(path_of(&east)).await;
    assert_eq!(status, 409, "{body}");
    assert!(error_message(&body).contains("1 label map rules"), "{body}");

    assert_eq!(stack.delete(&ours).await.0, 204);
    assert_eq!(stack.get(&ours).await.0, 404);
    assert_eq!(stack.get(&maps).await.1, Some(1));
    assert_eq!(stack.delete(path_of(&east)).await.0, 204);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_labeling_service_is_a_503() {
    let mut stack = start().await;
    stack.stop_labeling().await;
    let (status, _, body) = stack.get("/labels").await;
    assert_eq!(status, 503, "{body}");
    assert!(error_message(&body).contains("labeling service"), "{body}");
    stack.stop().await;
}
