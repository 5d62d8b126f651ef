//! One entity's effective labels from its inputs: a pure function of the profile's rules, the
//! annotation layers (the entity's own, then each controller's above it), the entity's
//! Kubernetes labels, the label maps and the catalog.
//!
//! Precedence per key: label map > profile assignment > annotation. The annotation that counts
//! for a key is the one of the highest layer (a controller's metadata over its pod template
//! over the pod's own; `bulkhead.io/` over `com.illumio.` within one object), and only it: when
//! it names no label, or one the profile's restriction does not allow, the key stays unset
//! rather than falling back to a lower layer, so what an owner says is never undercut by what
//! its pods say. Annotations never create labels; label map rules with `allow_create` ask for
//! the labels they miss (see [`Miss`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_schema::messages::labeling::{EnforcementMode, LabelId};

use crate::catalog::Catalog;
use crate::rules::{KeyRule, MapOrigin, MapRule, Rules};
use bulkhead_runtime::intern::Str;

/// A label annotation of one object, its prefix stripped: `bulkhead.io/role: web` is
/// `{key: role, value: web, illumio: false}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Annotation {
    pub(crate) key: Str,
    pub(crate) value: Str,
    /// From `com.illumio.<key>` rather than `bulkhead.io/<key>`.
    pub(crate) illumio: bool,
}

/// Where an effective label came from, compactly: an annotation's object is found again from
/// the entity by walking `depth` owners up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    LabelMap(Arc<MapOrigin>),
    Profile,
    Annotation {
        depth: u8,
        template: bool,
        illumio: bool,
    },
    /// A host-network pod's label, from its node.
    Node,
}

/// An entity's effective labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Effective {
    pub(crate) managed: bool,
    pub(crate) mode: Option<EnforcementMode>,
    /// Sorted by label id (one label per key).
    pub(crate) labels: Box<[(LabelId, Source)]>,
}

/// A label value resolution looked for and did not find: when it appears, the entity must be
/// resolved again. `create`: a label map rule may create it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Miss {
    pub(crate) key: Str,
    pub(crate) value: Str,
    pub(crate) create: bool,
}

/// One object's annotations at a distance from the entity (0: the entity itself).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer<'a> {
    pub(crate) depth: u8,
    /// The controller's pod template rather than its metadata.
    pub(crate) template: bool,
    pub(crate) annotations: &'a [Annotation],
}

pub(crate) struct Inputs<'a> {
    /// `None`: no profile (namespace unknown): like an unmanaged one.
    pub(crate) rules: Option<&'a Rules>,
    /// From the lowest precedence to the highest.
    pub(crate) layers: &'a [Layer<'a>],
    /// The entity's Kubernetes labels, sorted by key.
    pub(crate) kube_labels: &'a [(Str, Str)],
    pub(crate) maps: &'a [MapRule],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolution {
    pub(crate) effective: Effective,
    pub(crate) misses: Box<[Miss]>,
}

pub(crate) fn resolve(inputs: &Inputs<'_>, catalog: &Catalog) -> Resolution {
    let Some(rules) = inputs.rules.filter(|r| r.managed) else {
        return Resolution::default();
    };
    let mut chosen: BTreeMap<&str, (LabelId, Source)> = BTreeMap::new();
    let mut misses = Vec::new();

    let mut winners: BTreeMap<&str, (&Annotation, &Layer<'_>)> = BTreeMap::new();
    for layer in inputs.layers {
        for annotation in layer.annotations {
            winners.insert(&annotation.key, (annotation, layer));
        }
    }
    for (key, (annotation, layer)) in winners {
        let found = catalog.find(key, &annotation.value);
        let allowed = match (rules.rule(key), found) {
            (Some(KeyRule::Assign(_)), _) => false,
            (Some(KeyRule::Restrict(allowed)), Some(id)) => allowed.binary_search(&id).is_ok(),
            // Creating the label would not put it in the restriction: nothing to wait for.
            (Some(KeyRule::Restrict(_)), None) => false,
            (None, Some(_)) => true,
            (None, None) => {
                misses.push(Miss {
                    key: annotation.key.clone(),
                    value: annotation.value.clone(),
                    create: false,
                });
                false
            }
        };
        if let (true, Some(id)) = (allowed, found) {
            let source = Source::Annotation {
                depth: layer.depth,
                template: layer.template,
                illumio: annotation.illumio,
            };
            chosen.insert(key, (id, source));
        }
    }

    for (key, rule) in &rules.keys {
        if let KeyRule::Assign(id) = rule {
            chosen.insert(key, (*id, Source::Profile));
        }
    }

    for rule in inputs.maps {
        let Some(value) = kube_label(inputs.kube_labels, &rule.from_key) else {
            continue;
        };
        let to = if rule.values.is_empty() {
            value
        } else {
            match rule
                .values
                .binary_search_by(|(from, _)| (**from).cmp(value))
            {
                Ok(i) => &rule.values[i].1,
                Err(_) => continue,
            }
        };
        if to.is_empty() {
            continue;
        }
        match catalog.find(&rule.to_key, to) {
            Some(id) => {
                chosen.insert(&rule.to_key, (id, Source::LabelMap(rule.origin.clone())));
            }
            None => misses.push(Miss {
                key: rule.to_key.clone(),
                value: to.clone(),
                create: rule.allow_create,
            }),
        }
    }

    let mut labels: Vec<(LabelId, Source)> = chosen.into_values().collect();
    labels.sort_by_key(|(id, _)| *id);
    misses.sort();
    misses.dedup();
    Resolution {
        effective: Effective {
            managed: true,
            mode: rules.mode,
            labels: labels.into(),
        },
        misses: misses.into(),
    }
}

/// A host-network pod's labels: its node's, as the node's.
pub(crate) fn inherit(node: &Effective) -> Resolution {
    Resolution {
        effective: Effective {
            managed: node.managed,
            mode: None,
            labels: node
                .labels
                .iter()
                .map(|(id, _)| (*id, Source::Node))
                .collect(),
        },
        misses: Box::default(),
    }
}

fn kube_label<'a>(labels: &'a [(Str, Str)], key: &str) -> Option<&'a Str> {
    labels
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &labels[i].1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bulkhead_schema::messages::inventory::LabelMapItem;
    use bulkhead_schema::messages::labeling::{
        LabelCreator, LabelMapOrigin, LabelMapSpec, LabelRule, LoggedSettings, RestrictionMember,
    };
    use bulkhead_schema::testing::mk_map_item;

    use super::*;
    use crate::catalog::GroupDef;
    use crate::rules::CompiledMaps;

    /// role1..3, app1..2, env1..3 and env100-free, loc1, loc3, loc100: ids in that order.
    fn mk_catalog() -> Catalog {
        let mut catalog = Catalog::default();
        let labels = [
            ("role", "role1"),
            ("role", "role2"),
            ("app", "app1"),
            ("app", "app2"),
            ("env", "env1"),
            ("env", "env2"),
            ("env", "env3"),
            ("loc", "loc1"),
            ("loc", "loc3"),
            ("loc", "loc100"),
        ];
        for (i, (key, value)) in labels.iter().enumerate() {
            assert!(catalog.create_label(i as LabelId + 1, key, value, LabelCreator::Api));
        }
        catalog
    }

    fn id(catalog: &Catalog, key: &str, value: &str) -> LabelId {
        catalog.find(key, value).unwrap()
    }

    fn mk_annotations(pairs: &[(&str, &str)]) -> Vec<Annotation> {
        pairs
            .iter()
            .map(|(key, value)| Annotation {
                key: (*key).into(),
                value: (*value).into(),
                illumio: false,
            })
            .collect()
    }

    fn mk_rules(managed: bool, labels: &[(&str, LabelRule)], catalog: &Catalog) -> Rules {
        let settings = LoggedSettings {
            managed,
            enforcement_mode: EnforcementMode::Full,
            labels: labels
                .iter()
                .map(|(k, r)| ((*k).to_owned(), r.clone()))
                .collect(),
        };
        Rules::compile(&settings, catalog)
    }

    fn mk_map(items: Vec<LabelMapItem>) -> CompiledMaps {
        let maps = BTreeMap::from([(
            (LabelMapOrigin::Api, "m".to_owned()),
            LabelMapSpec {
                node_label_map: items.clone(),
                workload_label_map: items,
            },
        )]);
        CompiledMaps::compile(&maps, &mut |s: &str| s.into())
    }

    fn kube(pairs: &[(&str, &str)]) -> Vec<(Str, Str)> {
        let mut labels: Vec<(Str, Str)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        labels.sort();
        labels
    }

    /// The entity's labels as `key=value (source)`, by key.
    fn shown(resolution: &Resolution, catalog: &Catalog) -> Vec<String> {
        let mut shown: Vec<String> = resolution
            .effective
            .labels
            .iter()
            .map(|(id, source)| {
                let label = catalog.label(*id).unwrap();
                let source = match source {
                    Source::LabelMap(o) => format!("map:{}", o.from_key),
                    Source::Profile => "profile".into(),
                    Source::Annotation {
                        depth, template, ..
                    } => {
                        format!("annotation:{depth}{}", if *template { "t" } else { "" })
                    }
                    Source::Node => "node".into(),
                };
                format!("{}={} ({source})", label.key, label.value)
            })
            .collect();
        shown.sort();
        shown
    }

    fn mk_layer(depth: u8, template: bool, annotations: &[Annotation]) -> Layer<'_> {
        Layer {
            depth,
            template,
            annotations,
        }
    }

    fn resolve_own(
        rules: Option<&Rules>,
        annotations: &[Annotation],
        catalog: &Catalog,
    ) -> Resolution {
        let layers = [mk_layer(0, false, annotations)];
        let inputs = Inputs {
            rules,
            layers: &layers,
            kube_labels: &[],
            maps: &[],
        };
        resolve(&inputs, catalog)
    }

    /// The reference's worked example: role none, app from annotations, env from {env1, env2},
    /// loc fixed to loc1.
    fn reference_profile(catalog: &Catalog) -> Rules {
        mk_rules(
            true,
            &[
                ("role", LabelRule::Restriction(vec![])),
                (
                    "env",
                    LabelRule::Restriction(vec![
                        RestrictionMember::Label(id(catalog, "env", "env1")),
                        RestrictionMember::Label(id(catalog, "env", "env2")),
                    ]),
                ),
                ("loc", LabelRule::Assignment(id(catalog, "loc", "loc1"))),
            ],
            catalog,
        )
    }

    #[test]
    fn the_reference_example_keeps_app_and_allowed_env_and_fixes_loc() {
        let catalog = mk_catalog();
        let rules = reference_profile(&catalog);
        let pod = mk_annotations(&[
            ("role", "role1"),
            ("app", "app1"),
            ("env", "env1"),
            ("loc", "loc100"),
        ]);
        let resolved = resolve_own(Some(&rules), &pod, &catalog);
        assert_eq!(
            shown(&resolved, &catalog),
            [
                "app=app1 (annotation:0)",
                "env=env1 (annotation:0)",
                "loc=loc1 (profile)"
            ]
        );
        assert_eq!(resolved.effective.mode, Some(EnforcementMode::Full));

        let pod = mk_annotations(&[
            ("role", "role1"),
            ("app", "app1"),
            ("env", "env100"),
            ("loc", "loc100"),
        ]);
        let resolved = resolve_own(Some(&rules), &pod, &catalog);
        assert_eq!(
            shown(&resolved, &catalog),
            ["app=app1 (annotation:0)", "loc=loc1 (profile)"],
            "env100 is not in the allowed list"
        );
        let pod = mk_annotations(&[("env", "env3")]);
        assert_eq!(
            shown(&resolve_own(Some(&rules), &pod, &catalog), &catalog),
            ["loc=loc1 (profile)"],
            "env3 exists but is not allowed"
        );
    }

    #[test]
    fn unmanaged_or_unknown_profiles_give_no_labels() {
        let catalog = mk_catalog();
        let pod = mk_annotations(&[("app", "app1")]);
        let unmanaged = mk_rules(false, &[("loc", LabelRule::Assignment(8))], &catalog);
        for rules in [Some(&unmanaged), None] {
            let resolved = resolve_own(rules, &pod, &catalog);
            assert_eq!(resolved, Resolution::default());
            assert!(!resolved.effective.managed);
        }
    }

    #[test]
    fn annotations_never_create_labels_and_wait_for_them() {
        let catalog = mk_catalog();
        let free = mk_rules(true, &[], &catalog);
        let pod = mk_annotations(&[("app", "app9"), ("tier", "db")]);
        let resolved = resolve_own(Some(&free), &pod, &catalog);
        assert!(resolved.effective.labels.is_empty());
        let misses: Vec<(&str, &str, bool)> = resolved
            .misses
            .iter()
            .map(|m| (&*m.key, &*m.value, m.create))
            .collect();
        assert_eq!(misses, [("app", "app9", false), ("tier", "db", false)]);
    }

    #[test]
    fn restriction_lists_expand_label_groups() {
        let mut catalog = mk_catalog();
        let (env2, env3) = (id(&catalog, "env", "env2"), id(&catalog, "env", "env3"));
        catalog.put_group(
            1,
            GroupDef {
                key: "env".into(),
                name: "inner".into(),
                labels: vec![env3],
                sub_groups: vec![],
            },
        );
        catalog.put_group(
            2,
            GroupDef {
                key: "env".into(),
                name: "outer".into(),
                labels: vec![env2],
                sub_groups: vec![1],
            },
        );
        let rules = mk_rules(
            true,
            &[(
                "env",
                LabelRule::Restriction(vec![RestrictionMember::LabelGroup(2)]),
            )],
            &catalog,
        );
        for (value, allowed) in [("env1", false), ("env2", true), ("env3", true)] {
            let pod = mk_annotations(&[("env", value)]);
            let resolved = resolve_own(Some(&rules), &pod, &catalog);
            assert_eq!(!resolved.effective.labels.is_empty(), allowed, "{value}");
        }
    }

    #[test]
    fn the_highest_layer_wins_and_is_not_undercut() {
        let catalog = mk_catalog();
        let free = mk_rules(true, &[], &catalog);
        let pod = mk_annotations(&[("role", "role1"), ("app", "app1")]);
        let template = mk_annotations(&[("role", "role2"), ("env", "env1")]);
        let deployment = mk_annotations(&[("env", "env2")]);
        let layers = [
            mk_layer(0, false, &pod),
            mk_layer(2, true, &template),
            mk_layer(2, false, &deployment),
        ];
        let inputs = Inputs {
            rules: Some(&free),
            layers: &layers,
            kube_labels: &[],
            maps: &[],
        };
        assert_eq!(
            shown(&resolve(&inputs, &catalog), &catalog),
            [
                "app=app1 (annotation:0)",
                "env=env2 (annotation:2)",
                "role=role2 (annotation:2t)"
            ]
        );
        // the deployment names a label that does not exist: env stays unset
        let deployment = mk_annotations(&[("env", "env-nope")]);
        let layers = [
            mk_layer(0, false, &pod),
            mk_layer(2, true, &template),
            mk_layer(2, false, &deployment),
        ];
        let inputs = Inputs {
            layers: &layers,
            ..inputs
        };
        let resolved = resolve(&inputs, &catalog);
        assert!(
            !shown(&resolved, &catalog)
                .iter()
                .any(|l| l.starts_with("env="))
        );
        assert_eq!(&*resolved.misses[0].value, "env-nope");
    }

    #[test]
    fn label_maps_beat_profile_assignments_which_beat_annotations() {
        let catalog = mk_catalog();
        let rules = mk_rules(
            true,
            &[
                ("loc", LabelRule::Assignment(id(&catalog, "loc", "loc1"))),
                ("role", LabelRule::Restriction(vec![])),
            ],
            &catalog,
        );
        let maps = mk_map(vec![
            mk_map_item("topology/zone", "loc", &[], false),
            mk_map_item("tier", "role", &[], false),
        ]);
        let pod = mk_annotations(&[("loc", "loc100"), ("role", "role1")]);
        let layers = [mk_layer(0, false, &pod)];
        let labels = kube(&[("topology/zone", "loc3"), ("tier", "role2")]);
        let inputs = Inputs {
            rules: Some(&rules),
            layers: &layers,
            kube_labels: &labels,
            maps: &maps.workload,
        };
        assert_eq!(
            shown(&resolve(&inputs, &catalog), &catalog),
            ["loc=loc3 (map:topology/zone)", "role=role2 (map:tier)"],
            "a label map even sets a key the profile allows no annotation for"
        );
        let labels = kube(&[]);
        let inputs = Inputs {
            kube_labels: &labels,
            ..inputs
        };
        assert_eq!(
            shown(&resolve(&inputs, &catalog), &catalog),
            ["loc=loc1 (profile)"]
        );
    }

    #[test]
    fn values_maps_translate_listed_values_only() {
        let catalog = mk_catalog();
        let free = mk_rules(true, &[], &catalog);
        let maps = mk_map(vec![mk_map_item(
            "stage",
            "env",
            &[("prod", "env1"), ("staging", "env2")],
            false,
        )]);
        for (stage, expected) in [
            ("prod", vec!["env=env1 (map:stage)"]),
            ("staging", vec!["env=env2 (map:stage)"]),
            ("env3", vec![]),
        ] {
            let labels = kube(&[("stage", stage)]);
            let inputs = Inputs {
                rules: Some(&free),
                layers: &[],
                kube_labels: &labels,
                maps: &maps.workload,
            };
            let resolved = resolve(&inputs, &catalog);
            assert_eq!(shown(&resolved, &catalog), expected, "{stage}");
            assert!(
                resolved.misses.is_empty(),
                "an unlisted value is not a miss"
            );
        }
    }

    #[test]
    fn allow_create_asks_for_missing_labels_and_without_it_the_key_stays_unset() {
        let catalog = mk_catalog();
        let free = mk_rules(true, &[], &catalog);
        for create in [false, true] {
            let maps = mk_map(vec![mk_map_item("team", "app", &[], create)]);
            let labels = kube(&[("team", "payments")]);
            let inputs = Inputs {
                rules: Some(&free),
                layers: &[],
                kube_labels: &labels,
                maps: &maps.workload,
            };
            let resolved = resolve(&inputs, &catalog);
            assert!(resolved.effective.labels.is_empty());
            assert_eq!(
                &*resolved.misses,
                [Miss {
                    key: "app".into(),
                    value: "payments".into(),
                    create
                }]
            );
        }
    }

    #[test]
    fn the_last_yielding_map_rule_wins() {
        let catalog = mk_catalog();
        let free = mk_rules(true, &[], &catalog);
        let maps = mk_map(vec![
            mk_map_item("a", "app", &[], false),
            mk_map_item("b", "app", &[], false),
        ]);
        let labels = kube(&[("a", "app1"), ("b", "no-such-app")]);
        let inputs = Inputs {
            rules: Some(&free),
            layers: &[],
            kube_labels: &labels,
            maps: &maps.workload,
        };
        assert_eq!(
            shown(&resolve(&inputs, &catalog), &catalog),
            ["app=app1 (map:a)"],
            "b yields nothing, so a's label stays"
        );
        let labels = kube(&[("a", "app1"), ("b", "app2")]);
        let inputs = Inputs {
            kube_labels: &labels,
            ..inputs
        };
        assert_eq!(
            shown(&resolve(&inputs, &catalog), &catalog),
            ["app=app2 (map:b)"]
        );
    }

    #[test]
    fn host_network_pods_take_their_nodes_labels() {
        let catalog = mk_catalog();
        let maps = mk_map(vec![mk_map_item("zone", "loc", &[], false)]);
        let labels = kube(&[("zone", "loc3")]);
        let node_rules = Rules::node();
        let node = resolve(
            &Inputs {
                rules: Some(&node_rules),
                layers: &[],
                kube_labels: &labels,
                maps: &maps.node,
            },
            &catalog,
        );
        assert_eq!(shown(&node, &catalog), ["loc=loc3 (map:zone)"]);
        assert_eq!(node.effective.mode, None);
        let pod = inherit(&node.effective);
        assert_eq!(shown(&pod, &catalog), ["loc=loc3 (node)"]);
        assert!(pod.effective.managed);
    }
}
