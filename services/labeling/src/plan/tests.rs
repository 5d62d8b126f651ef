//! The planner's rules: what each command appends, and every refusal.

use bulkhead_schema::messages::labeling::{
    EnforcementMode, Href, LabelMapSpec, LabelRule, LabelingCommand, LabelingItem,
    LabelingRejection, ProfileLabel, ProfileSettings,
};
use bulkhead_schema::testing::{annotated, mk_map_item, mk_namespace, mk_pod};

use super::*;
use crate::index::tests::{C1, Feed, managed};

fn refused(result: Result<Plan, Refusal>) -> LabelingRejection {
    match result {
        Err(refusal) => refusal.rejection,
        Ok(plan) => panic!("planned {plan:?}"),
    }
}

fn create_group(
    feed: &mut Feed,
    key: &str,
    name: &str,
    labels: Vec<Href>,
    sub_groups: Vec<Href>,
) -> Result<Plan, Refusal> {
    feed.command(LabelingCommand::CreateLabelGroup {
        key: key.into(),
        name: name.into(),
        labels,
        sub_groups,
    })
}

fn settings(labels: Vec<ProfileLabel>) -> ProfileSettings {
    ProfileSettings {
        managed: true,
        enforcement_mode: EnforcementMode::Full,
        labels,
    }
}

fn assign(key: &str, href: Href) -> ProfileLabel {
    ProfileLabel {
        key: key.into(),
        assignment: Some(href),
        restriction: None,
    }
}

fn restrict(key: &str, hrefs: Vec<Href>) -> ProfileLabel {
    ProfileLabel {
        key: key.into(),
        assignment: None,
        restriction: Some(hrefs),
    }
}

#[test]
fn labels_need_an_existing_key_and_a_value_unique_ignoring_case() {
    let mut feed = Feed::new();
    let web = feed.create_label("role", "web");
    assert_eq!(web, 1);
    let create = |key: &str, value: &str| LabelingCommand::CreateLabel {
        key: key.into(),
        value: value.into(),
    };
    assert_eq!(
        refused(feed.command(create("tier", "x"))),
        LabelingRejection::NotFound
    );
    assert_eq!(
        refused(feed.command(create("role", "WEB"))),
        LabelingRejection::Conflict
    );
    assert_eq!(
        refused(feed.command(create("role", "  "))),
        LabelingRejection::Invalid
    );
    assert_eq!(
        refused(feed.command(create("role", &"x".repeat(256)))),
        LabelingRejection::Invalid
    );
    feed.command(create("role", "  db ")).unwrap();
    assert_eq!(feed.index.catalog.find("role", "db"), Some(2), "trimmed");

    let rename = |label_id, value: &str| LabelingCommand::RenameLabel {
        label_id,
        value: value.into(),
    };
    assert_eq!(
        refused(feed.command(rename(web, "DB"))),
        LabelingRejection::Conflict
    );
    assert_eq!(
        refused(feed.command(rename(9, "x"))),
        LabelingRejection::NotFound
    );
    let same = feed.command(rename(web, "web")).unwrap();
    assert!(
        same.events.is_empty(),
        "a rename to the same value changes nothing"
    );
    feed.command(rename(web, "Web")).unwrap();
    assert_eq!(feed.index.catalog.label(web).unwrap().value, "Web");
}

#[test]
fn label_keys_are_checked_and_kept_while_used() {
    let mut feed = Feed::new();
    let create = |key: &str| LabelingCommand::CreateLabelKey {
        key: key.into(),
        display_name: String::new(),
    };
    let delete = |key: &str| LabelingCommand::DeleteLabelKey { key: key.into() };
    for bad in ["Tier", "pairing_key", "", "a b"] {
        assert_eq!(
            refused(feed.command(create(bad))),
            LabelingRejection::Invalid,
            "{bad}"
        );
    }
    assert_eq!(
        refused(feed.command(create("role"))),
        LabelingRejection::Conflict
    );
    assert_eq!(
        refused(feed.command(delete("role"))),
        LabelingRejection::Invalid
    );
    assert_eq!(
        refused(feed.command(delete("tier"))),
        LabelingRejection::NotFound
    );
    feed.command(create("tier")).unwrap();
    assert_eq!(feed.index.catalog.key("tier").unwrap().display_name, "tier");
    let label = feed.create_label("tier", "gold");
    assert_eq!(
        refused(feed.command(delete("tier"))),
        LabelingRejection::InUse
    );
    feed.command(LabelingCommand::DeleteLabel { label_id: label })
        .unwrap();
    let plan = feed.command(delete("tier")).unwrap();
    assert!(
        matches!(plan.answer, Answer::Gone(item) if matches!(*item, LabelingItem::LabelKey(_)))
    );
    assert!(!feed.index.catalog.is_key("tier"));
    for i in 0..MAX_KEYS - 4 {
        feed.command(create(&format!("k{i}"))).unwrap();
    }
    assert_eq!(
        refused(feed.command(create("one-more"))),
        LabelingRejection::Conflict
    );
}

#[test]
fn a_label_is_not_deleted_while_anything_uses_it() {
    let mut feed = Feed::new();
    let loc1 = feed.create_label("loc", "loc1");
    let web = feed.create_label("role", "web");
    let env1 = feed.create_label("env", "env1");
    let app1 = feed.create_label("app", "app1");
    let delete = |label_id| LabelingCommand::DeleteLabel { label_id };

    // a template's assignment
    feed.command(LabelingCommand::SetTemplate {
        cluster_id: C1.into(),
        settings: settings(vec![assign("loc", Href::label(loc1))]),
    })
    .unwrap();
    assert_eq!(
        refused(feed.command(delete(loc1))),
        LabelingRejection::InUse
    );
    // a group
    create_group(&mut feed, "env", "lower", vec![Href::label(env1)], vec![]).unwrap();
    assert_eq!(
        refused(feed.command(delete(env1))),
        LabelingRejection::InUse
    );
    // a label map rule translating to it
    feed.command(LabelingCommand::PutLabelMap {
        cluster_id: C1.into(),
        name: "m".into(),
        spec: LabelMapSpec {
            node_label_map: vec![],
            workload_label_map: vec![mk_map_item("team", "app", &[("a", "app1")], false)],
        },
    })
    .unwrap();
    assert_eq!(
        refused(feed.command(delete(app1))),
        LabelingRejection::InUse
    );
    // a pod carrying it
    feed.observe(&mk_namespace("shop"));
    let shop = feed.profile_of("shop").unwrap();
    feed.command(LabelingCommand::UpdateProfile {
        cluster_id: C1.into(),
        profile_id: shop,
        name: None,
        managed: Some(true),
        enforcement_mode: None,
        labels: None,
    })
    .unwrap();
    feed.observe(&annotated(
        mk_pod("p-1", "shop", None),
        &[("bulkhead.io/role", "web")],
    ));
    match feed.command(delete(web)) {
        Err(refusal) => {
            assert_eq!(refusal.rejection, LabelingRejection::InUse);
            assert!(refusal.reason.contains("1 workloads"), "{}", refusal.reason);
        }
        other => panic!("{other:?}"),
    }
    feed.forget(&mk_pod("p-1", "shop", None));
    feed.command(delete(web)).unwrap();
    assert_eq!(
        refused(feed.command(delete(web))),
        LabelingRejection::NotFound
    );
}

#[test]
fn label_groups_hold_labels_and_groups_of_their_key_without_cycles() {
    let mut feed = Feed::new();
    let env1 = feed.create_label("env", "env1");
    let web = feed.create_label("role", "web");
    assert_eq!(
        refused(create_group(
            &mut feed,
            "env",
            "g",
            vec![Href::label(web)],
            vec![]
        )),
        LabelingRejection::Invalid,
        "a role label in an env group"
    );
    assert_eq!(
        refused(create_group(
            &mut feed,
            "env",
            "g",
            vec![Href::label(99)],
            vec![]
        )),
        LabelingRejection::NotFound
    );
    assert_eq!(
        refused(create_group(
            &mut feed,
            "env",
            "g",
            vec![Href {
                href: "/orgs/1/x/1".into()
            }],
            vec![]
        )),
        LabelingRejection::Invalid
    );
    create_group(&mut feed, "env", "a", vec![Href::label(env1)], vec![]).unwrap();
    create_group(&mut feed, "env", "b", vec![], vec![Href::label_group(1)]).unwrap();
    create_group(&mut feed, "env", "c", vec![], vec![Href::label_group(2)]).unwrap();
    assert_eq!(
        refused(create_group(&mut feed, "env", "A", vec![], vec![])),
        LabelingRejection::Conflict,
        "names are unique per key, ignoring case"
    );
    assert_eq!(
        refused(create_group(
            &mut feed,
            "env",
            "d",
            vec![Href::label_group(1)],
            vec![]
        )),
        LabelingRejection::Invalid,
        "a group where a label goes"
    );
    let update = |group_id, sub_groups: Vec<Href>| LabelingCommand::UpdateLabelGroup {
        group_id,
        name: None,
        labels: None,
        sub_groups: Some(sub_groups),
    };
    // a contains nothing yet; a -> c -> b -> a would be a cycle, and so would a -> a
    assert_eq!(
        refused(feed.command(update(1, vec![Href::label_group(3)]))),
        LabelingRejection::Invalid
    );
    assert_eq!(
        refused(feed.command(update(1, vec![Href::label_group(1)]))),
        LabelingRejection::Invalid
    );
    let unchanged = feed.command(update(2, vec![Href::label_group(1)])).unwrap();
    assert!(unchanged.events.is_empty());
    // in use: as a sub-group, and by a profile's restriction
    let delete = |group_id| LabelingCommand::DeleteLabelGroup { group_id };
    assert_eq!(refused(feed.command(delete(1))), LabelingRejection::InUse);
    feed.command(LabelingCommand::SetTemplate {
        cluster_id: C1.into(),
        settings: settings(vec![restrict("env", vec![Href::label_group(3)])]),
    })
    .unwrap();
    assert_eq!(refused(feed.command(delete(3))), LabelingRejection::InUse);
    feed.command(LabelingCommand::SetTemplate {
        cluster_id: C1.into(),
        settings: ProfileSettings::default(),
    })
    .unwrap();
    feed.command(delete(3)).unwrap();
    feed.command(delete(2)).unwrap();
    feed.command(delete(1)).unwrap();
}

#[test]
fn profile_settings_name_labels_of_their_keys_once_each() {
    let mut feed = Feed::new();
    let loc1 = feed.create_label("loc", "loc1");
    let web = feed.create_label("role", "web");
    create_group(&mut feed, "role", "tiers", vec![Href::label(web)], vec![]).unwrap();
    let template = |labels| LabelingCommand::SetTemplate {
        cluster_id: C1.into(),
        settings: settings(labels),
    };
    let both = ProfileLabel {
        key: "loc".into(),
        assignment: Some(Href::label(loc1)),
        restriction: Some(vec![]),
    };
    let neither = ProfileLabel {
        key: "loc".into(),
        assignment: None,
        restriction: None,
    };
    for (labels, why) in [
        (vec![both], "assignment and restriction"),
        (vec![neither], "neither"),
        (
            vec![assign("loc", Href::label(web))],
            "a role label for loc",
        ),
        (
            vec![assign("role", Href::label_group(1))],
            "a group as assignment",
        ),
        (
            vec![assign("loc", Href::label(loc1)), restrict("loc", vec![])],
            "loc twice",
        ),
    ] {
        assert_eq!(
            refused(feed.command(template(labels))),
            LabelingRejection::Invalid,
            "{why}"
        );
    }
    assert_eq!(
        refused(feed.command(template(vec![restrict("tier", vec![])]))),
        LabelingRejection::NotFound
    );
    let plan = feed
        .command(template(vec![
            assign("loc", Href::label(loc1)),
            restrict(
                "role",
                vec![Href::label_group(1), Href::label(web), Href::label(web)],
            ),
        ]))
        .unwrap();
    let [LabelingEvent::TemplateSet { settings, .. }] = plan.events.as_slice() else {
        panic!("{plan:?}")
    };
    assert_eq!(
        settings.labels["role"],
        LabelRule::Restriction(vec![
            RestrictionMember::Label(web),
            RestrictionMember::LabelGroup(1)
        ]),
        "members once each, labels first"
    );
    assert_eq!(settings, &managed_with(loc1, web));
    assert_eq!(
        refused(feed.command(LabelingCommand::SetTemplate {
            cluster_id: "nope".into(),
            settings: ProfileSettings::default(),
        })),
        LabelingRejection::NotFound
    );
}

fn managed_with(loc1: LabelId, web: LabelId) -> LoggedSettings {
    managed(&[
        ("loc", LabelRule::Assignment(loc1)),
        (
            "role",
            LabelRule::Restriction(vec![
                RestrictionMember::Label(web),
                RestrictionMember::LabelGroup(1),
            ]),
        ),
    ])
}

#[test]
fn profiles_update_what_is_given_and_only_pre_created_ones_are_deleted() {
    let mut feed = Feed::new();
    feed.observe(&mk_namespace("shop"));
    let shop = feed.profile_of("shop").unwrap();
    let update = |managed| LabelingCommand::UpdateProfile {
        cluster_id: C1.into(),
        profile_id: shop.clone(),
        name: None,
        managed,
        enforcement_mode: Some(EnforcementMode::Test),
        labels: None,
    };
    let plan = feed.command(update(Some(true))).unwrap();
    let [LabelingEvent::ProfileUpdated { name, settings, .. }] = plan.events.as_slice() else {
        panic!("{plan:?}")
    };
    assert_eq!(name, "shop");
    assert!(settings.managed);
    assert_eq!(settings.enforcement_mode, EnforcementMode::Test);
    assert!(
        feed.command(update(None)).unwrap().events.is_empty(),
        "nothing changes"
    );
    assert_eq!(
        refused(feed.command(LabelingCommand::DeleteProfile {
            cluster_id: C1.into(),
            profile_id: shop.clone(),
        })),
        LabelingRejection::Invalid
    );
    assert_eq!(
        refused(feed.command(LabelingCommand::UpdateProfile {
            cluster_id: C1.into(),
            profile_id: "nope".into(),
            name: None,
            managed: None,
            enforcement_mode: None,
            labels: None,
        })),
        LabelingRejection::NotFound
    );
    assert_eq!(
        refused(feed.command(LabelingCommand::CreateProfile {
            cluster_id: C1.into(),
            name: " ".into(),
            settings: ProfileSettings::default(),
        })),
        LabelingRejection::Invalid
    );
}

#[test]
fn label_maps_name_existing_keys_and_each_from_key_once() {
    let mut feed = Feed::new();
    let put = |spec| LabelingCommand::PutLabelMap {
        cluster_id: C1.into(),
        name: "m".into(),
        spec,
    };
    let workload = |items| LabelMapSpec {
        node_label_map: vec![],
        workload_label_map: items,
    };
    assert_eq!(
        refused(feed.command(put(workload(vec![mk_map_item("a", "tier", &[], false)])))),
        LabelingRejection::NotFound
    );
    for items in [
        vec![mk_map_item("", "app", &[], false)],
        vec![
            mk_map_item("a", "app", &[], false),
            mk_map_item("a", "env", &[], false),
        ],
        vec![mk_map_item("a", "app", &[("x", "y"), ("x", "z")], false)],
        vec![mk_map_item("a", "app", &[("x", "")], false)],
    ] {
        assert_eq!(
            refused(feed.command(put(workload(items.clone())))),
            LabelingRejection::Invalid,
            "{items:?}"
        );
    }
    let spec = workload(vec![mk_map_item("a", "app", &[("x", "y")], true)]);
    assert_eq!(feed.command(put(spec.clone())).unwrap().events.len(), 1);
    assert!(
        feed.command(put(spec)).unwrap().events.is_empty(),
        "the same map again"
    );
    let delete = |name: &str| LabelingCommand::DeleteLabelMap {
        cluster_id: C1.into(),
        name: name.into(),
    };
    assert_eq!(
        refused(feed.command(delete("other"))),
        LabelingRejection::NotFound
    );
    feed.command(delete("m")).unwrap();
}
